# CPU image: Debian 12 with everything scripts/setup.sh installs, noisegeom built into /src/build.
#   docker build -t noisegeom .
#   docker run --rm -v $PWD/data:/src/data -v $PWD/runs:/src/runs noisegeom train experiments/quick_cnn.yaml
FROM debian:12
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN scripts/setup.sh && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/src/build/noisegeom"]
CMD ["--help"]
