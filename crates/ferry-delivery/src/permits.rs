//! A lane's send permits: its `concurrency`, the calls it has in flight at most. A node
//! that shares its store with other delivering nodes holds a share of them
//! ([`SendPermits::set_share`]), so the destination sees the configured concurrency from the
//! cluster, not from each node.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// The semaphore a lane's sends acquire, resizable to a share of the configured size.
#[derive(Debug)]
pub(crate) struct SendPermits {
    sem: Arc<Semaphore>,
    configured: usize,
    /// The size the semaphore is being brought to (permits still in use when it shrank are
    /// forgotten as they come back).
    target: Mutex<usize>,
}

impl SendPermits {
    pub(crate) fn new(concurrency: usize) -> Arc<Self> {
        let concurrency = concurrency.max(1);
        Arc::new(SendPermits {
            sem: Arc::new(Semaphore::new(concurrency)),
            configured: concurrency,
            target: Mutex::new(concurrency),
        })
    }

    /// The semaphore the lane's sends acquire.
    pub(crate) fn semaphore(&self) -> Arc<Semaphore> {
        self.sem.clone()
    }

    /// Hold `1 / nodes` of the configured permits (at least one, so every node can send):
    /// more are added at once; fewer are forgotten now if free, else as the calls holding
    /// them finish.
    pub(crate) fn set_share(&self, nodes: u32) {
        let share = (self.configured / usize::try_from(nodes.max(1)).unwrap_or(usize::MAX)).max(1);
        let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if share > *target {
            self.sem.add_permits(share - *target);
        } else if share < *target {
            let excess = *target - share;
            let rest = excess - self.sem.forget_permits(excess);
            if rest > 0 {
                // In use now: taken back as they are released.
                let sem = self.sem.clone();
                let rest = u32::try_from(rest).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = sem.acquire_many_owned(rest).await {
                        permits.forget();
                    }
                });
            }
        }
        *target = share;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_share_shrinks_and_grows_the_permits() {
        let p = SendPermits::new(6);
        let sem = p.semaphore();
        let held = sem.clone().acquire_many_owned(5).await.unwrap();
        p.set_share(3);
        // One was free and is forgotten now; three more as the calls end.
        assert_eq!(sem.available_permits(), 0);
        drop(held);
        tokio::task::yield_now().await;
        for _ in 0..10 {
            if sem.available_permits() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(sem.available_permits(), 2);
        p.set_share(1);
        assert_eq!(sem.available_permits(), 6);
        p.set_share(10);
        assert_eq!(sem.available_permits(), 1, "at least one permit");
    }
}
