//! The demo's live view: spinners with counters on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;

use ferry_store::LaneCounts;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::vendors::SenderStats;

/// Renders what is happening, once per tick.
pub struct LiveView {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    ticks: u64,
}

impl LiveView {
    /// A view with `rows` lines; animated only when stdout is a terminal.
    pub fn new(rows: usize) -> Self {
        let bars = std::io::stdout().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template("{spinner:.cyan} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bars = (0..rows)
                .map(|_| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b
                })
                .collect();
            (multi, bars)
        });
        Self { bars, ticks: 0 }
    }

    /// Print a line above the live rows (or plainly).
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => println!("{line}"),
        }
    }

    /// Show the current figures. Plain output prints every other tick.
    pub fn update(
        &mut self,
        elapsed_secs: u64,
        senders: &[(&str, &SenderStats)],
        lanes: &[LaneCounts],
    ) {
        self.ticks += 1;
        let mut lines = Vec::new();
        for (name, s) in senders {
            lines.push(format!(
                "{:<34} sent {:>6}  accepted {:>6}  duplicates {:>4}  refused {:>4}",
                format!("{name} (sender)"),
                s.sent.load(Relaxed),
                s.accepted.load(Relaxed),
                s.duplicates.load(Relaxed),
                s.rejected.load(Relaxed) + s.errors.load(Relaxed),
            ));
        }
        for l in lanes {
            lines.push(lane_line(l));
        }
        match &self.bars {
            Some((_, bars)) => {
                for (bar, line) in bars.iter().zip(lines) {
                    bar.set_message(line);
                    bar.tick();
                }
            }
            None if self.ticks.is_multiple_of(2) => {
                println!("--- t={elapsed_secs}s");
                for line in lines {
                    println!("{line}");
                }
            }
            None => {}
        }
    }

    /// Stop animating, leaving the last figures on screen.
    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars {
                b.finish();
            }
        }
    }
}

/// One lane's figures on one line.
pub fn lane_line(l: &LaneCounts) -> String {
    format!(
        "{:<34} delivered {:>6}  pending {:>4}  in flight {:>3}  retrying {:>4}  dead {:>4}",
        format!("{} -> {}", l.lane.flow, l.lane.destination),
        l.delivered,
        l.pending,
        l.in_flight,
        l.retrying,
        l.dead
    )
}
