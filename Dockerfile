# noisegeom images, built from this checkout by scripts/setup.sh (the same sources and CMake options
# as a developer's build), with the test suite run during the build.
#   CPU image: Debian 12 with Debian's LibTorch 1.13.
#     docker build -t noisegeom .
#     docker run --rm -v $PWD/data:/src/data -v $PWD/runs:/src/runs noisegeom train experiments/quick_cnn.yaml
#   CUDA image: Debian 12 with NVIDIA's CUDA toolkit and PyTorch's LibTorch from the torch wheel
#   (scripts/setup.sh --cuda); the build machine needs no GPU (the suite then runs on the CPU).
#     docker build --build-arg VARIANT=cuda -t noisegeom:cuda .
#     docker run --rm --gpus all -v $PWD/data:/src/data -v $PWD/runs:/src/runs noisegeom:cuda \
#       reproduce fig5 --scale paper --out /src/runs/paper --budget 1h
# --build-arg TESTS=0 skips the test suite. The variant stage is picked by name, so BuildKit (the
# default builder) builds only the one asked for.
ARG VARIANT=cpu

FROM debian:12 AS base-cpu
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/*

FROM debian:12 AS base-cuda
# The toolkit (nvcc, headers) that the torch wheel's CMake config asks for; the driver comes from
# the host at run time (--gpus all).
ARG CUDA_TOOLKIT=cuda-toolkit-13-0
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl && \
    curl -fsSLo /tmp/cuda-keyring.deb \
      https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb && \
    dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb && \
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$CUDA_TOOLKIT" && \
    rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NOISEGEOM_VENV=/opt/noisegeom-venv-cuda

FROM base-${VARIANT}
ARG VARIANT
ARG TESTS=1
WORKDIR /src
COPY . /src
# build/ for the CPU, build-cuda/ for CUDA (as on a developer's machine); `noisegeom` on the PATH
# is the one built.
RUN if [ "$VARIANT" = cuda ]; then scripts/setup.sh --cuda && dir=build-cuda; \
    else scripts/setup.sh && dir=build; fi && \
    ln -s "/src/$dir/noisegeom" /usr/local/bin/noisegeom && \
    rm -rf /var/lib/apt/lists/* /root/.cache/pip && \
    if [ "$TESTS" = 1 ]; then \
      ctest --test-dir "$dir" -j "$(nproc)" --output-on-failure --timeout 900; \
    fi
ENTRYPOINT ["noisegeom"]
CMD ["--help"]
