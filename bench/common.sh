# Sourced by the bench scripts that compare `noisegeom` with PyTorch: sets `bin` (built first
# when missing) and `data` (the CIFAR-10 directory, checked).
root=${root:?set root before sourcing bench/common.sh}
bin=$root/build/noisegeom
[ -x "$bin" ] || "$root/scripts/setup.sh"
data=${NOISEGEOM_DATA:-$root/data/cifar-10-batches-bin}
"$bin" data check "$data" >/dev/null
