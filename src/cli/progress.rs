//! Progress: a bar on stdout for `convert -p` (only when stdout is a terminal, as qemu-img
//! -p), and `kiln build`'s step lines and bars on stderr.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln::plan::{Observer, TaskId};
use kiln::size::HumanSize;

pub(super) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(super) fn new(total: u64) -> Self {
        let target = if std::io::stdout().is_terminal() {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(
            "{percent:>3}% [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }

    pub(super) fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    pub(super) fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// `kiln build`'s (and `kiln fetch`'s) progress on stderr: on a terminal, a bar per
/// download, per artefact being written and per disk being hashed, with the step lines
/// printed above them; otherwise the step lines alone, in order, and each tenth of a disk's
/// hashing.
pub(super) struct BuildProgress {
    /// `None`: stderr is not a terminal.
    bars: Option<MultiProgress>,
    running: BTreeMap<TaskId, Task>,
}

struct Task {
    bar: ProgressBar,
    label: String,
    total: u64,
    /// The last tenth written as a line (not on a terminal).
    tenth: u64,
}

impl BuildProgress {
    /// What a build reports to: nothing when `quiet`, else a new [`BuildProgress`].
    pub(super) fn observer(quiet: bool) -> Box<dyn Observer> {
        if quiet {
            Box::new(|_: &str| {})
        } else {
            Box::new(Self::new())
        }
    }

    fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            bars: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            running: BTreeMap::new(),
        }
    }
}

impl Observer for BuildProgress {
    fn line(&mut self, text: &str) {
        let line = format!("kiln: {text}");
        match &self.bars {
            Some(bars) => {
                // Printed above the bars; a failed print only loses the line.
                let _ = bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn start(&mut self, id: TaskId, label: &str, total: u64) {
        let bar = match &self.bars {
            Some(bars) => {
                let style = ProgressStyle::with_template(
                    "{prefix:30!} {percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = bars.add(ProgressBar::new(total));
                bar.set_style(style);
                bar.set_prefix(label.to_string());
                bar
            }
            None => ProgressBar::hidden(),
        };
        let task = Task {
            bar,
            label: label.to_string(),
            total,
            tenth: 0,
        };
        // A run started again (a fixed VHD found at the end of its stream) restarts its tasks.
        if let Some(old) = self.running.insert(id, task) {
            old.bar.finish_and_clear();
        }
    }

    fn advance(&mut self, id: TaskId, done: u64) {
        let Some(task) = self.running.get_mut(&id) else {
            return;
        };
        task.bar.set_position(done);
        // Off a terminal, a disk's hashing (minutes for a large raw disk) is shown by tenths.
        if self.bars.is_none() && matches!(id, TaskId::Hash(_)) && task.total > 0 {
            let tenth = u64::try_from(u128::from(done) * 10 / u128::from(task.total)).unwrap_or(10);
            if tenth > task.tenth {
                task.tenth = tenth;
                eprintln!(
                    "kiln: {}: {} of {} ({}%)",
                    task.label,
                    HumanSize(done),
                    HumanSize(task.total),
                    tenth * 10
                );
            }
        }
    }

    fn finish(&mut self, id: TaskId) {
        if let Some(task) = self.running.remove(&id) {
            task.bar.finish_and_clear();
        }
    }
}

impl Drop for BuildProgress {
    /// A failed build leaves no half-drawn bars above its error.
    fn drop(&mut self) {
        for task in std::mem::take(&mut self.running).into_values() {
            task.bar.finish_and_clear();
        }
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}
