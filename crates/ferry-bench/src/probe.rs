//! A fixed amount of CPU work, timed: signing 1 KB bodies as the senders do. On the same
//! machine it takes the same time; a run whose probe took much longer than usual ran on a
//! slower CPU (a busy host under a shared VM, throttling), and its figures are not
//! comparable with the others'.

use std::time::{Duration, Instant};

use ferry_signature::SigningKey;
use ferry_signature::standard_webhooks::sign;

/// Signatures per probe: about 20 ms on a 2.6 GHz EPYC core.
const SIGNATURES: u32 = 20_000;

/// Time to sign [`SIGNATURES`] 1 KB bodies on this thread.
pub fn cpu() -> Duration {
    let key = SigningKey::from_bytes(b"ferry-bench cpu probe".to_vec());
    let body = [b'x'; 1024];
    let t0 = Instant::now();
    let mut len = 0;
    for i in 0..SIGNATURES {
        len += std::hint::black_box(sign(&key, "msg_probe", i64::from(i), &body)).len();
    }
    std::hint::black_box(len);
    t0.elapsed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_takes_some_time() {
        let d = super::cpu();
        assert!(d > std::time::Duration::ZERO && d < std::time::Duration::from_secs(30));
    }
}
