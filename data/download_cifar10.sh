#!/usr/bin/env bash
# Fetches the CIFAR-10 binary version, checks the archive against the official MD5 and extracts
# data_batch_1..5.bin, test_batch.bin and batches.meta.txt.
#
# Usage: data/download_cifar10.sh [DEST]
#   DEST defaults to data/cifar-10-batches-bin next to this script.
#   NOISEGEOM_CIFAR_ARCHIVE=/path/to/cifar-10-binary.tar.gz uses a local copy instead of the network.
# Runs again are cheap: when DEST already holds all six files with their official sizes it does
# nothing. An archive whose MD5 does not match is deleted and nothing is extracted.
set -euo pipefail

URL="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5="c32a1d4ab5d03f1284b67883e8d87530"  # the published checksum of cifar-10-binary.tar.gz
FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin
  test_batch.bin)
FILE_BYTES=30730000  # 10,000 records of 3073 bytes

say() { printf 'download_cifar10: %s\n' "$*"; }
die() {
  printf 'download_cifar10: error: %s\n' "$*" >&2
  exit 1
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
[[ $# -le 1 ]] || die "expected at most one argument (the destination directory), got $#"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$script_dir/cifar-10-batches-bin}"

# Prints the first reason why DEST is not complete; prints nothing when it is.
incomplete_reason() {
  local f size
  for f in "${FILES[@]}"; do
    if [[ ! -f "$dest/$f" ]]; then
      echo "$dest/$f is missing"
      return
    fi
    size="$(wc -c <"$dest/$f" | tr -d ' ')"
    if [[ "$size" != "$FILE_BYTES" ]]; then
      echo "$dest/$f has $size bytes, not $FILE_BYTES"
      return
    fi
  done
}

reason="$(incomplete_reason)"
if [[ -z "$reason" ]]; then
  say "$dest already holds the six CIFAR-10 files with their official sizes; nothing to do"
  exit 0
fi
say "$reason; fetching the archive"

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then
    md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then
    md5 -q "$1"
  elif command -v openssl >/dev/null 2>&1; then
    openssl md5 -r "$1" | cut -d' ' -f1
  else
    die "no md5sum, md5 or openssl to check the archive with"
  fi
}

# Work next to DEST so that the final moves are renames on one file system.
parent="$(dirname "$dest")"
mkdir -p "$parent"
work="$(mktemp -d "$parent/.cifar10-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT
archive="$work/cifar-10-binary.tar.gz"

if [[ -n "${NOISEGEOM_CIFAR_ARCHIVE:-}" ]]; then
  [[ -f "$NOISEGEOM_CIFAR_ARCHIVE" ]] ||
    die "NOISEGEOM_CIFAR_ARCHIVE=$NOISEGEOM_CIFAR_ARCHIVE: no such file"
  say "using the local archive $NOISEGEOM_CIFAR_ARCHIVE (copied; the original is left alone)"
  cp "$NOISEGEOM_CIFAR_ARCHIVE" "$archive"
elif command -v curl >/dev/null 2>&1; then
  say "downloading $URL (about 163 MB) with curl"
  curl -fL --retry 3 -o "$archive" "$URL" || die "curl could not download $URL"
elif command -v wget >/dev/null 2>&1; then
  say "downloading $URL (about 163 MB) with wget"
  wget -O "$archive" "$URL" || die "wget could not download $URL"
else
  die "neither curl nor wget is installed; download $URL yourself and set NOISEGEOM_CIFAR_ARCHIVE"
fi

got="$(md5_of "$archive")"
if [[ "$got" != "$MD5" ]]; then
  rm -f "$archive"
  die "MD5 mismatch: the archive has $got, the official cifar-10-binary.tar.gz has $MD5;" \
    "deleted the downloaded copy, extracted nothing"
fi
say "MD5 $got matches the official checksum"

tar -xzf "$archive" -C "$work"
src="$work/cifar-10-batches-bin"
[[ -d "$src" ]] || die "the archive holds no cifar-10-batches-bin directory"
mkdir -p "$dest"
for f in "${FILES[@]}" batches.meta.txt readme.html; do
  if [[ -f "$src/$f" ]]; then
    mv -f "$src/$f" "$dest/$f"
  fi
done
reason="$(incomplete_reason)"
[[ -z "$reason" ]] || die "after extraction, $reason"
say "extracted ${FILES[*]} and batches.meta.txt into $dest (the archive was removed)"
