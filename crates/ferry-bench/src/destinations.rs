//! Several destinations in the bench flow (`run --destinations N`), each delivering to a
//! receiver of its own: healthy ones (with the receiver faults of the command line), ones
//! that never answer (`--hang-destination`) and ones with nothing listening
//! (`--down-destination`). One destination, the default, is the plain `run`.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::{DestinationOpts, FaultOpts};
use crate::clock::Clock;
use crate::faults::Faults;
use crate::receiver::{self, Sink};
use crate::{hub, ports, runner};

/// What a destination's receiver does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Answers 200 (or as the receiver faults say); the drain waits for its deliveries.
    Healthy,
    /// Reads every request and never answers.
    Hanging,
    /// Nothing listens on its port: connections are refused.
    Down,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Healthy => "healthy",
            Role::Hanging => "hanging",
            Role::Down => "down",
        }
    }
}

/// One destination of the bench flow and its receiver.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name in the hub's config (`sink`, or `d1`..`dN`).
    pub name: String,
    pub role: Role,
    /// Where its receiver listens (or, when down, the port nobody listens on).
    pub addr: SocketAddr,
    /// What arrived (stays empty when hanging or down).
    pub sink: Arc<Sink>,
    pub faults: Arc<Faults>,
}

impl Destination {
    /// A destination whose receiver is already running.
    pub fn healthy(name: &str, addr: SocketAddr, sink: Arc<Sink>, faults: Arc<Faults>) -> Self {
        Self {
            name: name.to_string(),
            role: Role::Healthy,
            addr,
            sink,
            faults,
        }
    }

    /// The drain waits for this destination's deliveries.
    pub fn drained(&self) -> bool {
        self.role == Role::Healthy
    }
}

/// The role of each destination, validated: `N` of `--hang-destination N` and
/// `--down-destination N` count from 1, and a destination cannot be both.
pub fn roles(opts: &DestinationOpts) -> anyhow::Result<Vec<Role>> {
    let n = usize::from(opts.destinations);
    let mut roles = vec![Role::Healthy; n];
    for (list, role, flag) in [
        (&opts.hang_destination, Role::Hanging, "--hang-destination"),
        (&opts.down_destination, Role::Down, "--down-destination"),
    ] {
        for &i in list {
            let i = usize::from(i);
            anyhow::ensure!(
                (1..=n).contains(&i),
                "{flag} {i}: there are only {n} destinations (see --destinations)"
            );
            anyhow::ensure!(
                roles[i - 1] == Role::Healthy,
                "destination {i} is given more than one role"
            );
            roles[i - 1] = role;
        }
    }
    Ok(roles)
}

/// Start a receiver for every destination that has one; `seed` is the fault seed of the
/// first healthy destination (the others get the next seeds).
pub async fn start(
    opts: &DestinationOpts,
    fault_opts: &FaultOpts,
    seed: u64,
    clock: Clock,
    run: &str,
) -> anyhow::Result<Vec<Destination>> {
    let roles = roles(opts)?;
    let names = hub::destination_names(roles.len());
    let mut out = Vec::with_capacity(roles.len());
    let mut next_seed = seed;
    for (name, role) in names.into_iter().zip(roles) {
        let sink = Arc::new(Sink::new(clock, run));
        let (addr, faults) = match role {
            Role::Healthy => {
                let faults = Arc::new(Faults::new(fault_opts, next_seed)?);
                next_seed = next_seed.wrapping_add(1);
                let bind = runner::receiver_addr(&faults)?;
                let addr = receiver::start(bind, sink.clone(), faults.clone()).await?;
                (addr, faults)
            }
            Role::Hanging => {
                let faults = Arc::new(Faults::hanging());
                let bind = SocketAddr::from(([127, 0, 0, 1], 0));
                let addr = receiver::start(bind, sink.clone(), faults.clone()).await?;
                (addr, faults)
            }
            // Outside the ephemeral port range, so that no client socket can be handed
            // this port and connect to itself (see `ports`): connects are refused.
            Role::Down => (ports::stable_loopback()?, Arc::new(Faults::none())),
        };
        out.push(Destination {
            name,
            role,
            addr,
            sink,
            faults,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: u16, hang: &[u16], down: &[u16]) -> DestinationOpts {
        DestinationOpts {
            destinations: n,
            hang_destination: hang.to_vec(),
            down_destination: down.to_vec(),
            sample_every: None,
        }
    }

    #[test]
    fn roles_are_validated() {
        assert_eq!(roles(&opts(1, &[], &[])).unwrap(), [Role::Healthy]);
        assert_eq!(
            roles(&opts(3, &[2], &[3])).unwrap(),
            [Role::Healthy, Role::Hanging, Role::Down]
        );
        assert!(roles(&opts(3, &[4], &[])).is_err());
        assert!(roles(&opts(3, &[2], &[2])).is_err());
        assert!(roles(&opts(2, &[], &[0])).is_err());
    }

    #[tokio::test]
    async fn down_refuses_and_hanging_listens() {
        let fault_opts = FaultOpts::default();
        let run = crate::payload::new_run_id();
        let d = start(&opts(3, &[2], &[3]), &fault_opts, 1, Clock::new(), &run)
            .await
            .unwrap();
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["d1", "d2", "d3"]);
        assert!(d[0].drained() && !d[1].drained() && !d[2].drained());
        assert!(!d[0].faults.any() && d[1].faults.any());
        tokio::net::TcpStream::connect(d[1].addr).await.unwrap();
        let refused = tokio::net::TcpStream::connect(d[2].addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
