//! `flux-playground`: Flux on one machine, for trying it out.
//!
//! It owns the playground: a local registry (Debian's `docker-registry`)
//! holding a few synthetic tags of every sock-shop image and notifying
//! fluxd of each push, a bare git repo seeded with the sock-shop manifests
//! whose images point at that registry ([`seed`]), and `fluxd` running on it
//! ([`Playground`]), applying to a simulated cluster (the testkit's API
//! server double with its rollout controller), a real one, or none
//! ([`Cluster`]). Stopping it stops every process and removes every
//! temporary folder. It does not build or install anything (the
//! `scripts/playground` script does), and it is no product feature: fluxd
//! and fluxctl are used exactly as a user runs them.
//!
//! ```
//! use flux_playground::seed::{move_images, tags_around};
//! let moved = move_images("    image: weaveworksdemos/front-end:0.3.12\n", "localhost:5000");
//! assert_eq!(moved.text, "    image: localhost:5000/weaveworksdemos/front-end:0.3.12\n");
//! assert_eq!(tags_around("0.3.12"), ["0.3.10", "0.3.11", "0.3.12", "0.3.13"]);
//! ```

pub mod context;
mod playground;
pub mod seed;

pub use playground::{Cluster, FRONT_END, FluxdLog, Options, Playground};
