# The CI step image: fluxctl with git and the ssh client, entrypoint
# `fluxctl plugin` (Drone, Woodpecker, GitHub Actions; GitLab CI runs
# `fluxctl plugin` itself).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p fluxctl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/fluxctl /usr/local/bin/fluxctl
ENTRYPOINT ["fluxctl"]
CMD ["plugin"]
