//! `kiln fetch SPEC` (fill the download cache), `kiln cache ls|prune`, and how downloads
//! are shown: through the build's progress drawer on stderr (stdout is for results).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use kiln::fetch::{self, Cache, Event, cache::Kind};
use kiln::plan::{Observer, Plan, TaskId};
use kiln::size::HumanSize;

use super::KilnDiagnostic;
use super::build::ConfineArgs;
use super::progress::BuildProgress;

#[derive(Debug, Args)]
pub(super) struct FetchArgs {
    /// The appliance spec (YAML).
    spec: PathBuf,
    #[command(flatten)]
    confine: ConfineArgs,
    /// Download nothing: check that every source (and its checksum and signature files)
    /// is in the cache, naming each one that is not.
    #[arg(long)]
    offline: bool,
    /// No progress lines on stderr.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub(super) struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the cache: verified images (by SHA-256), checksum and signature files (by URL),
    /// decompressed images (unpacked/) and unfinished downloads, with sizes and the URLs
    /// or files they came from.
    Ls,
    /// Remove cache entries: unfinished downloads (--partials), entries not used for a
    /// while (--older-than), or everything (--all).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Remove every entry.
    #[arg(long)]
    all: bool,
    /// Remove unfinished downloads (`*.partial`; resuming them is no longer possible).
    #[arg(long)]
    partials: bool,
    /// Remove entries last written more than this long ago: `30d`, `12h`, `90m`, `3600s`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    older_than: Option<Duration>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 30d, 12h, 90m"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h, d or w")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Shows a fetch's events through a build's [`Observer`] (the one drawer, on stderr): log
/// lines as lines, each download as a task with a bar on a terminal. Downloads are
/// numbered in the order they start.
pub(super) struct Downloads<'a> {
    obs: &'a mut dyn Observer,
    count: usize,
    running: Option<TaskId>,
}

impl<'a> Downloads<'a> {
    pub(super) fn new(obs: &'a mut dyn Observer) -> Self {
        Self {
            obs,
            count: 0,
            running: None,
        }
    }

    pub(super) fn on(&mut self, e: Event<'_>) {
        match e {
            Event::Log(line) => self.obs.line(line),
            Event::Start { url, total, at } => {
                let id = TaskId::Download(self.count);
                self.count += 1;
                self.obs
                    .start(id, &fetch::file_name_of(url), total.unwrap_or(0));
                self.obs.advance(id, at);
                self.running = Some(id);
            }
            Event::Progress(done) => {
                if let Some(id) = self.running {
                    self.obs.advance(id, done);
                }
            }
            Event::Finish => {
                if let Some(id) = self.running.take() {
                    self.obs.finish(id);
                }
            }
        }
    }
}

/// Before `kiln build` writes anything: every source the selected outputs need, fetched
/// (checksum and signature files refreshed) or, with `offline`, found in the cache; the
/// paths go to [`Plan::execute_with`], so nothing is fetched or verified twice.
pub(super) fn for_build(
    plan: &Plan,
    offline: bool,
    obs: &mut dyn Observer,
) -> miette::Result<Vec<Option<PathBuf>>> {
    let opts = fetch::Options { offline };
    let mut downloads = Downloads::new(obs);
    plan.fetch_sources(false, opts, &mut |e| downloads.on(e))
        .map_err(wrap)
}

pub(super) fn fetch(args: &FetchArgs) -> miette::Result<()> {
    let spec = super::build::load(&args.spec, &args.confine.options())?;
    let opts = kiln::plan::BuildOptions {
        out_dir: PathBuf::from("."),
        only: Vec::new(),
        sign: None,
        report: false,
    };
    let plan = Plan::new(spec, &opts).map_err(wrap)?;
    let fetch_opts = fetch::Options {
        offline: args.offline,
    };
    let mut obs = BuildProgress::observer(args.quiet);
    let mut downloads = Downloads::new(obs.as_mut());
    let paths = plan
        .fetch_sources(true, fetch_opts, &mut |e| downloads.on(e))
        .map_err(wrap)?;
    for (disk, path) in plan.spec.disks.iter().zip(paths) {
        if let Some(path) = path {
            println!("{}\t{}", disk.name, path.display());
        }
    }
    Ok(())
}

pub(super) fn cache(args: &CacheArgs) -> kiln::Result<()> {
    let cache = Cache::new(fetch::cache_dir()).with_unpacked(kiln::unpack::unpacked_dir());
    match &args.command {
        CacheCommand::Ls => {
            ls(&cache);
            Ok(())
        }
        CacheCommand::Prune(p) => prune(&cache, p),
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Image => "image",
        Kind::File => "file",
        Kind::Partial => "partial",
        Kind::Unpacked => "unpacked",
    }
}

fn ls(cache: &Cache) {
    let entries = cache.list();
    println!("# {} ({} entries)", cache.dir().display(), entries.len());
    let mut total = 0u64;
    for e in &entries {
        total = total.saturating_add(e.size);
        // Unpacked images live next to the downloads: `unpacked/<key>`.
        let root = cache.dir().parent().unwrap_or(cache.dir());
        let name = (e.path.strip_prefix(cache.dir()))
            .or_else(|_| e.path.strip_prefix(root))
            .unwrap_or(&e.path);
        let url = e.meta.urls.last().map_or("-", String::as_str);
        println!(
            "{}\t{}\t{}\t{url}",
            kind_name(e.kind),
            HumanSize(e.size),
            name.display()
        );
    }
    println!("# total {}", HumanSize(total));
}

fn prune(cache: &Cache, p: &PruneArgs) -> kiln::Result<()> {
    if !p.all && !p.partials && p.older_than.is_none() {
        return Err(kiln::Error::invalid_input(
            "cache prune needs --all, --partials or --older-than AGE",
        ));
    }
    let now = SystemTime::now();
    let old = |e: &fetch::cache::Entry| {
        p.older_than.is_some_and(|age| {
            e.modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d > age)
        })
    };
    let removed = cache.prune(|e| p.all || (p.partials && e.kind == Kind::Partial) || old(e))?;
    let bytes: u64 = removed.iter().map(|e| e.size).sum();
    for e in &removed {
        println!("removed {}", e.path.display());
    }
    eprintln!(
        "kiln: removed {} entries ({})",
        removed.len(),
        HumanSize(bytes)
    );
    Ok(())
}

fn wrap(e: kiln::Error) -> miette::Report {
    miette::Report::new(KilnDiagnostic(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_age("3y").is_err());
        assert!(parse_age("d").is_err());
    }
}
