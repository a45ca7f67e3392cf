//! The soak report: one table of counters with their targets, the timeline of deploys and
//! restarts, and memory per server process; and the list of missed targets.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Net, get};
use crate::server::Generation;

/// One deploy or restart.
pub struct Event {
    pub at: Duration,
    pub what: String,
    pub took: Duration,
    pub detail: String,
    /// Answers the clients received while it went on (for the Redis restart, until both
    /// replicas were healthy again): it happened under load.
    pub answered: u64,
}

/// What the Redis restart did to the revocations it held.
pub struct RedisRestart {
    pub before: Option<u64>,
    pub after: Option<u64>,
    /// Both replicas were healthy again afterwards.
    pub healthy: bool,
}

pub struct Report {
    pub cfg_line: String,
    pub wall: Duration,
    pub load: Duration,
    pub sweep: Duration,
    pub net: Arc<Net>,
    pub events: Vec<Event>,
    pub generations: Vec<Generation>,
    pub server_rss_start: [u64; 2],
    pub redis: Option<RedisRestart>,
    pub client_panics: u64,
    pub unfinished: u64,
    pub healthy_at_end: bool,
    pub client_rss: (u64, u64),
    pub replicas: Vec<String>,
    /// Logouts the replayed cookies were sampled from: before, during or after the Redis
    /// restart.
    pub revoked_logouts: [u64; 2],
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    fn lost(&self) -> u64 {
        let c = &self.net.c;
        get(&c.lost_gone) + get(&c.lost_counter)
    }

    fn invalid_accepted(&self) -> u64 {
        let c = &self.net.c;
        get(&c.foreign_session)
            + get(&c.replay_same_accepted)
            + get(&c.replay_all_accepted)
            + get(&c.sweep_revoked_accepted)
            + get(&c.tamper_accepted)
            + get(&c.forged_accepted)
            + get(&c.sweep_forged_accepted)
    }

    fn server_panics(&self) -> u64 {
        self.generations.iter().map(|g| g.panics).sum()
    }

    /// Every missed target, and every sign that a check did not really run.
    pub fn failures(&self) -> Vec<String> {
        let c = &self.net.c;
        let mut f = Vec::new();
        let mut want_zero = |what: &str, n: u64| {
            if n != 0 {
                f.push(format!("{what}: {n} (target 0)"));
            }
        };
        want_zero("valid sessions lost", self.lost());
        want_zero("invalid sessions accepted", self.invalid_accepted());
        want_zero("server panics", self.server_panics());
        want_zero("client panics", self.client_panics);
        want_zero("HTTP 5xx other than 503", get(&c.http_500));
        want_zero("HTTP 503 outside a logout", get(&c.http_503_other));
        want_zero(
            "HTTP 503 on logout with Redis up",
            get(&c.http_503_logout_redis_up),
        );
        want_zero("other unexpected HTTP statuses", get(&c.http_other));
        want_zero("requests given up", get(&c.gave_up));
        want_zero("harness errors", get(&c.harness_errors));
        want_zero("valid forged control refused", get(&c.control_refused));
        want_zero(
            "kept sessions not re-issued under the final primary",
            get(&c.sweep_not_on_primary),
        );
        want_zero(
            "server processes that did not stop cleanly",
            self.generations.iter().filter(|g| g.unclean).count() as u64,
        );
        want_zero("clients that did not finish", self.unfinished);
        for e in &self.events {
            if e.answered == 0 {
                f.push(format!("no request was answered during `{}`", e.what));
            }
        }
        if !self.healthy_at_end {
            f.push("the denylists were not healthy at the end".into());
        }
        match &self.redis {
            None => f.push("Redis was not restarted".into()),
            Some(r) => {
                if !r.healthy {
                    f.push("the replicas did not resynchronise after the Redis restart".into());
                }
                if let (Some(b), Some(a)) = (r.before, r.after)
                    && a < b
                {
                    f.push(format!("Redis lost revocations in its restart: {b} -> {a}"));
                }
            }
        }
        // Each check must have run, or a zero above proves nothing.
        for (what, n) in [
            ("logins", get(&c.logins)),
            ("logouts", get(&c.logouts)),
            ("replays after logout", get(&c.replay_all_checked)),
            (
                "replays of cookies revoked before the Redis restart",
                get(&c.sweep_revoked_before_redis_restart),
            ),
            (
                "kept sessions checked at the end",
                get(&c.sweep_kept_checked),
            ),
            ("tampered cookies", get(&c.tamper_sent)),
            ("forgeries checked at the end", get(&c.sweep_forged_checked)),
            ("sessions moved to a newer key", get(&c.key_forward)),
        ] {
            if n == 0 {
                f.push(format!("no {what}: that check did not run"));
            }
        }
        f
    }
}

impl fmt::Display for Report {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.net.c;
        let mut s = String::new();
        let _ = writeln!(s, "\n== soak report: {}", self.cfg_line);
        let _ = writeln!(
            s,
            "load {}, final check {}, whole run {}; {} requests ({:.0}/s), latency p50 {:?}, p99 {:?}, max {:?}",
            secs(self.load),
            secs(self.sweep),
            secs(self.wall),
            get(&c.requests),
            get(&c.requests) as f64 / self.load.as_secs_f64().max(0.001),
            self.net.latency.quantile(0.5),
            self.net.latency.quantile(0.99),
            self.net.latency.max(),
        );
        let mut rows: Vec<(String, String, &str)> = Vec::new();
        let mut row = |label: &str, value: String, target: &'static str| {
            rows.push((label.to_owned(), value, target));
        };
        row("valid sessions lost", self.lost().to_string(), "0");
        row(
            "  no session / wrong counter / found at the end",
            format!(
                "{} / {} / {}",
                get(&c.lost_gone),
                get(&c.lost_counter),
                get(&c.sweep_kept_lost)
            ),
            "",
        );
        row(
            "invalid sessions accepted",
            self.invalid_accepted().to_string(),
            "0",
        );
        row(
            "  logged-out cookie, at once on the same instance",
            format!(
                "{} of {}",
                get(&c.replay_same_accepted),
                get(&c.replay_same_checked)
            ),
            "0",
        );
        row(
            "  logged-out cookie, on each instance after the grace",
            format!(
                "{} of {}",
                get(&c.replay_all_accepted),
                get(&c.replay_all_checked)
            ),
            "0",
        );
        row(
            "  logged-out cookie, at the end on both instances",
            format!(
                "{} of {} ({} + {} cookies from {} + {} logouts before + during/after the Redis restart)",
                get(&c.sweep_revoked_accepted),
                get(&c.sweep_revoked_checked),
                get(&c.sweep_revoked_before_redis_restart),
                (get(&c.sweep_revoked_checked) / 2)
                    .saturating_sub(get(&c.sweep_revoked_before_redis_restart)),
                self.revoked_logouts[0],
                self.revoked_logouts[1],
            ),
            "0",
        );
        row(
            "  tampered cookie",
            format!("{} of {}", get(&c.tamper_accepted), get(&c.tamper_sent)),
            "0",
        );
        row(
            "  forged token, during the run / at the end",
            format!(
                "{} of {} / {} of {}",
                get(&c.forged_accepted),
                get(&c.forged_sent),
                get(&c.sweep_forged_accepted),
                get(&c.sweep_forged_checked)
            ),
            "0",
        );
        row(
            "  another client's session",
            get(&c.foreign_session).to_string(),
            "0",
        );
        row(
            "panics: servers / clients",
            format!("{} / {}", self.server_panics(), self.client_panics),
            "0",
        );
        row("HTTP 5xx other than 503", get(&c.http_500).to_string(), "0");
        row(
            "HTTP 503 on logout while Redis restarts (documented; retried)",
            get(&c.http_503_logout).to_string(),
            "",
        );
        row(
            "HTTP 503 elsewhere",
            get(&c.http_503_other).to_string(),
            "0",
        );
        row(
            "other unexpected statuses",
            get(&c.http_other).to_string(),
            "0",
        );
        row(
            "network errors retried: refused / closed / timeout",
            format!(
                "{} / {} / {}",
                get(&c.net_refused),
                get(&c.net_closed),
                get(&c.net_timeout)
            ),
            "",
        );
        row(
            "requests given up (after 60 s)",
            get(&c.gave_up).to_string(),
            "0",
        );
        row("harness errors", get(&c.harness_errors).to_string(), "0");
        row(
            "replays accepted inside the Redis restart window (re-checked at the end)",
            get(&c.replay_deferred).to_string(),
            "",
        );
        row(
            "logins / reads / writes / logouts",
            format!(
                "{} / {} / {} / {}",
                get(&c.logins),
                get(&c.reads),
                get(&c.writes),
                get(&c.logouts)
            ),
            "",
        );
        row(
            "re-issued under a newer key / back to an older one",
            format!("{} / {}", get(&c.key_forward), get(&c.key_back)),
            "",
        );
        row(
            "kept sessions checked at the end / not moved to k3",
            format!(
                "{} / {}",
                get(&c.sweep_kept_checked),
                get(&c.sweep_not_on_primary)
            ),
            "- / 0",
        );
        let last = |name: &str| {
            self.generations
                .iter()
                .rfind(|g| g.name == name)
                .map_or(0, |g| g.rss_end_kib)
        };
        row(
            "server RSS at start -> end, A",
            format!("{} -> {}", mib(self.server_rss_start[0]), mib(last("A"))),
            "",
        );
        row(
            "server RSS at start -> end, B",
            format!("{} -> {}", mib(self.server_rss_start[1]), mib(last("B"))),
            "",
        );
        row(
            "client (test process) RSS at start -> end",
            format!("{} -> {}", mib(self.client_rss.0), mib(self.client_rss.1)),
            "",
        );
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let v = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let _ = writeln!(s, "| {:w$} | {:v$} | target |", "counter", "value");
        let _ = writeln!(s, "|{}|{}|--------|", "-".repeat(w + 2), "-".repeat(v + 2));
        for (label, value, target) in &rows {
            let _ = writeln!(s, "| {label:w$} | {value:>v$} | {target:6} |");
        }

        let _ = writeln!(s, "\ntimeline:");
        let _ = writeln!(
            s,
            "| at | event | took | answers meanwhile | detail |\n|---|---|---|---|---|"
        );
        for e in &self.events {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                secs(e.at),
                e.what,
                secs(e.took),
                e.answered,
                e.detail
            );
        }

        let _ = writeln!(s, "\nserver processes:");
        let _ = writeln!(
            s,
            "| instance | ring | up | RSS at start | RSS at end | peak RSS | panics | clean stop |\n|---|---|---|---|---|---|---|---|"
        );
        for g in &self.generations {
            let _ = writeln!(
                s,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} |",
                g.name,
                g.generation,
                g.keys,
                secs(g.lifetime),
                mib(g.rss_start_kib),
                mib(g.rss_end_kib),
                mib(g.peak_kib),
                g.panics,
                if g.unclean { "NO" } else { "yes" }
            );
        }
        let _ = writeln!(
            s,
            "\ndenylist replicas at the end: {}",
            self.replicas.join("; ")
        );
        let samples = self.net.samples();
        if !samples.is_empty() {
            let _ = writeln!(s, "\nexamples:");
            for (kind, list) in samples {
                for e in list {
                    let _ = writeln!(s, "- {kind}: {e}");
                }
            }
        }
        let failures = self.failures();
        let _ = writeln!(
            s,
            "\nverdict: {}",
            if failures.is_empty() {
                "every target met".to_owned()
            } else {
                format!("MISSED: {}", failures.join("; "))
            }
        );
        out.write_str(&s)
    }
}
