//! Wake-ups between nodes: a batch that leaves deliveries pending in a lane notifies the
//! store's channel (`pg_notify`, sent by the server at commit), and every node listening
//! wakes its lane at once instead of at its next idle poll. A node that takes events
//! (`--role api`) and the node that delivers them are then a commit apart.
//!
//! The listener is a thread with a connection of its own; it connects again when the
//! connection is lost (a wake-up missed meanwhile is caught by the lanes' idle poll).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres::Transaction;
use tokio::sync::mpsc;

use super::Connector;
use super::writer::{Failure, prepared};
use crate::LaneKey;

/// Separates the flow from the destination in a notification's payload.
const SEP: char = '\u{1f}';

/// The channel of the store's lanes: one per schema, so hubs on other schemas of the
/// database do not wake each other.
pub(crate) fn channel(schema: Option<&str>) -> String {
    match schema {
        Some(s) => format!("ferry_lanes:{s}"),
        None => "ferry_lanes".to_owned(),
    }
}

/// Notify `lanes` on `channel`, delivered when the transaction commits.
pub(crate) fn notify(
    tx: &mut Transaction<'_>,
    channel: &str,
    lanes: &[(String, String)],
) -> Result<(), Failure> {
    if lanes.is_empty() {
        return Ok(());
    }
    let stmt = prepared(tx, "SELECT pg_notify($1, $2)")?;
    for (flow, destination) in lanes {
        let payload = format!("{flow}{SEP}{destination}");
        tx.execute(&stmt, &[&channel, &payload])?;
    }
    Ok(())
}

/// The listening thread; stops when `stop` is set or nobody receives any more.
pub(crate) struct Listener {
    pub stop: Arc<AtomicBool>,
    pub thread: JoinHandle<()>,
}

/// Listen on `channel`, sending each lane notified to `out`.
pub(crate) fn spawn(
    connector: Arc<Connector>,
    channel: String,
    out: mpsc::UnboundedSender<LaneKey>,
) -> std::io::Result<Listener> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("ferry-store-pg-listen".to_owned())
        .spawn(move || run(&connector, &channel, &out, &flag))?;
    Ok(Listener { stop, thread })
}

fn run(
    connector: &Connector,
    channel: &str,
    out: &mpsc::UnboundedSender<LaneKey>,
    stop: &AtomicBool,
) {
    // Quoted: the channel holds the schema name (checked to be a plain identifier).
    let listen = format!("LISTEN \"{channel}\"");
    while !stop.load(Ordering::Relaxed) && !out.is_closed() {
        let mut client = match connector.connect().and_then(|mut c| {
            c.batch_execute(&listen)
                .map(|_| c)
                .map_err(super::codec::map_err)
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "store: cannot listen for other nodes' work; trying again");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) && !out.is_closed() && !client.is_closed() {
            let mut notes = client.notifications();
            let mut batch = notes.timeout_iter(Duration::from_millis(250));
            loop {
                match batch.next() {
                    Ok(Some(note)) => {
                        if let Some((flow, destination)) = note.payload().split_once(SEP) {
                            let lane = LaneKey {
                                flow: flow.to_owned(),
                                destination: destination.to_owned(),
                            };
                            if out.send(lane).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "store: the listening connection failed; connecting again");
                        break;
                    }
                }
            }
        }
    }
}
