//! The clients: one Tokio task per logical client, each with its own cookie jar, and the
//! counters they fill.
//!
//! A client logs in, then reads and increments a counter kept in its session (`/me`,
//! `/incr`); it knows the value the counter must have, so a session that is refused, lost or
//! rolled back is seen at once and exactly. Some sessions end with a logout, after which the
//! old cookie is replayed and must be refused; the others are kept to be checked at the end
//! of the run, after every rotation and restart. Now and then a client sends a tampered copy
//! of its cookie, or a forged one, and counts any that is accepted.
//!
//! Network errors (an instance restarting) are retried on a random instance and counted by
//! kind; they are not lost sessions, because the session travels with the client: a request
//! retried with the same cookie gives the same answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::header::{COOKIE, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sealed_session::codec::peek;
use sealed_session::{
    Codec, Key, Keyring, SealedCodec, SessionId, SessionState, SignedCodec, Timestamp,
};
use tokio::sync::Semaphore;

/// The session cookie as the middleware names it by default (`sid`, Secure, so `__Host-`).
pub const COOKIE_NAME: &str = "__Host-sid";
/// A request not answered in this time is abandoned and retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// A request that keeps failing for this long is given up (and counted).
const GIVE_UP: Duration = Duration::from_secs(60);
/// How many failures of each kind are kept, as text, for the report.
const SAMPLES: usize = 5;

/// A small, fast, seedable random number generator (SplitMix64); no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Every counter of the run. Relaxed atomics: they are read once everything has stopped.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Answers received (any status).
    pub answered: AtomicU64,
    pub logins: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub logouts: AtomicU64,

    /// A live session answered as "no session".
    pub lost_gone: AtomicU64,
    /// A live session answered with another counter value (rolled back or skipped).
    pub lost_counter: AtomicU64,
    /// A live session answered as another client's session.
    pub foreign_session: AtomicU64,

    pub replay_same_checked: AtomicU64,
    pub replay_same_accepted: AtomicU64,
    pub replay_all_checked: AtomicU64,
    pub replay_all_accepted: AtomicU64,
    /// Replays accepted while Redis was being restarted (documented: another instance learns
    /// of a revocation when Redis is back); checked again, strictly, at the end.
    pub replay_deferred: AtomicU64,
    pub tamper_sent: AtomicU64,
    pub tamper_accepted: AtomicU64,
    pub forged_sent: AtomicU64,
    pub forged_accepted: AtomicU64,
    /// The valid token among the forgeries (a positive control) was refused.
    pub control_refused: AtomicU64,

    pub sweep_kept_checked: AtomicU64,
    pub sweep_kept_lost: AtomicU64,
    pub sweep_not_on_primary: AtomicU64,
    pub sweep_revoked_checked: AtomicU64,
    pub sweep_revoked_before_redis_restart: AtomicU64,
    pub sweep_revoked_accepted: AtomicU64,
    pub sweep_forged_checked: AtomicU64,
    pub sweep_forged_accepted: AtomicU64,

    pub http_500: AtomicU64,
    /// A logout answered 503 while Redis was being restarted: documented, retried.
    pub http_503_logout: AtomicU64,
    /// A logout answered 503 with Redis up: the revocation failed for another reason.
    pub http_503_logout_redis_up: AtomicU64,
    pub http_503_other: AtomicU64,
    pub http_other: AtomicU64,
    pub net_refused: AtomicU64,
    pub net_closed: AtomicU64,
    pub net_timeout: AtomicU64,
    pub gave_up: AtomicU64,
    /// Something the harness did not expect (a login refused, a logout that never worked).
    pub harness_errors: AtomicU64,

    pub key_forward: AtomicU64,
    pub key_back: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Request latencies, in buckets 10% apart.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

const RATIO: f64 = 1.1;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..256).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
    fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let i = ((us as f64).ln() / RATIO.ln()) as usize;
        bump(&self.buckets[i.min(self.buckets.len() - 1)]);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }
    /// The latency under which `q` of the requests were answered (bucket upper bound).
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(get).collect();
        let total: u64 = counts.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return Duration::from_micros(RATIO.powi(i as i32 + 1) as u64);
            }
        }
        Duration::ZERO
    }
    pub fn max(&self) -> Duration {
        Duration::from_micros(get(&self.max_us))
    }
}

/// A client's cookies, replayed like a browser replays them.
#[derive(Clone, Debug, Default)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
}

impl Jar {
    /// The `Cookie` header, if any cookie is set.
    pub fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
    /// Applies `Set-Cookie` headers (a `Max-Age=0` or empty value removes the cookie).
    pub fn absorb(&mut self, set_cookies: &[String]) {
        for raw in set_cookies {
            let mut parts = raw.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let removed =
                value.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if removed {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    /// The session token, if the jar holds one.
    pub fn token(&self) -> Option<&str> {
        self.cookies.get(COOKIE_NAME).map(String::as_str)
    }
    /// The id of the key that sealed the session token (read from its clear header).
    pub fn key_id(&self) -> String {
        self.token()
            .and_then(|t| peek(t).ok())
            .map(|p| p.header.key_id)
            .unwrap_or_default()
    }
}

/// Whether a `Set-Cookie` list clears the session cookie.
fn clears_session(set_cookies: &[String]) -> bool {
    let mut jar = Jar::default();
    jar.cookies.insert(COOKIE_NAME.to_owned(), "x".to_owned());
    jar.absorb(set_cookies);
    jar.token().is_none()
}

/// One answer.
pub struct Reply {
    /// Which instance answered (0 = A, 1 = B).
    pub inst: usize,
    pub status: StatusCode,
    pub body: String,
    pub set_cookies: Vec<String>,
}

impl Reply {
    /// A session answer that shows a session: the body is `client-id counter`, not `-`.
    pub fn shows_session(&self) -> bool {
        self.status == StatusCode::OK && self.body != "-"
    }
}

enum NetError {
    /// Could not connect (the instance is restarting).
    Refused,
    /// The connection broke before the answer was complete.
    Closed,
    Timeout,
}

/// The HTTP side: one pooled client to both instances, with a cap on requests in flight.
pub struct Net {
    http: Client<HttpConnector, Empty<Bytes>>,
    ports: [u16; 2],
    permits: Semaphore,
    pub c: Counters,
    pub latency: Histogram,
    samples: Mutex<BTreeMap<&'static str, Vec<String>>>,
}

impl Net {
    pub fn new(ports: [u16; 2], max_in_flight: usize) -> Net {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Net {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            ports,
            permits: Semaphore::new(max_in_flight.max(1)),
            c: Counters::default(),
            latency: Histogram::new(),
            samples: Mutex::default(),
        }
    }

    /// Keeps a few examples of each kind of failure for the report.
    pub fn sample(&self, kind: &'static str, what: impl FnOnce() -> String) {
        let mut s = self.samples.lock().unwrap();
        let list = s.entry(kind).or_default();
        if list.len() < SAMPLES {
            list.push(what());
        }
    }

    pub fn samples(&self) -> BTreeMap<&'static str, Vec<String>> {
        self.samples.lock().unwrap().clone()
    }

    async fn once(
        &self,
        inst: usize,
        post: bool,
        path: &str,
        cookie: Option<&str>,
    ) -> Result<Reply, NetError> {
        let mut req = Request::builder()
            .method(if post { Method::POST } else { Method::GET })
            .uri(format!("http://127.0.0.1:{}{path}", self.ports[inst]));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let req = req.body(Empty::new()).expect("a valid request");
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    NetError::Refused
                } else {
                    NetError::Closed
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|_| NetError::Closed)?;
            Ok(Reply {
                inst,
                status: parts.status,
                body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                set_cookies: parts
                    .headers
                    .get_all(SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect(),
            })
        };
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .unwrap_or(Err(NetError::Timeout))?;
        self.latency.record(started.elapsed());
        Ok(reply)
    }

    /// One request, retried through network errors for up to [`GIVE_UP`]: on instance `pin`
    /// when given, else on a random instance each time. Counts every attempt and answer.
    pub async fn call(
        &self,
        rng: &mut Rng,
        pin: Option<usize>,
        post: bool,
        path: &str,
        cookie: Option<&str>,
    ) -> Option<Reply> {
        let start = Instant::now();
        loop {
            let inst = pin.unwrap_or_else(|| rng.below(2) as usize);
            bump(&self.c.requests);
            match self.once(inst, post, path, cookie).await {
                Ok(r) => {
                    bump(&self.c.answered);
                    match r.status {
                        StatusCode::OK => {}
                        // Judged by the caller, who knows whether Redis was away.
                        StatusCode::SERVICE_UNAVAILABLE if path == "/logout" => {}
                        StatusCode::SERVICE_UNAVAILABLE => {
                            bump(&self.c.http_503_other);
                            self.sample("503 outside logout", || format!("{path}: {}", r.body));
                        }
                        s if s.is_server_error() => {
                            bump(&self.c.http_500);
                            self.sample("5xx", || format!("{path}: {s} {}", r.body));
                        }
                        s => {
                            bump(&self.c.http_other);
                            self.sample("other status", || format!("{path}: {s} {}", r.body));
                        }
                    }
                    return Some(r);
                }
                Err(e) => {
                    bump(match e {
                        NetError::Refused => &self.c.net_refused,
                        NetError::Closed => &self.c.net_closed,
                        NetError::Timeout => &self.c.net_timeout,
                    });
                    if start.elapsed() > GIVE_UP {
                        bump(&self.c.gave_up);
                        self.sample("gave up", || format!("{path} on instance {inst}"));
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(10 + rng.below(50))).await;
                }
            }
        }
    }

    /// Like [`Net::call`], also retrying 5xx answers (counted) until a 200 or [`GIVE_UP`].
    pub async fn call_ok(
        &self,
        rng: &mut Rng,
        pin: Option<usize>,
        post: bool,
        path: &str,
        cookie: Option<&str>,
    ) -> Option<Reply> {
        let start = Instant::now();
        loop {
            let r = self.call(rng, pin, post, path, cookie).await?;
            if r.status == StatusCode::OK {
                return Some(r);
            }
            if !r.status.is_server_error() || start.elapsed() > GIVE_UP {
                bump(&self.c.harness_errors);
                self.sample("harness", || format!("{path} answered {}", r.status));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100 + rng.below(100))).await;
        }
    }

    /// `GET /status` of one instance, uncounted: `health=... revoked=... panics=...`.
    pub async fn status(&self, inst: usize) -> Option<String> {
        match self.once(inst, false, "/status", None).await {
            Ok(r) if r.status == StatusCode::OK => Some(r.body),
            _ => None,
        }
    }
}

/// A session a client holds: its id, the counter value it must have, its cookies.
#[derive(Clone, Debug)]
pub struct Live {
    pub cid: String,
    pub n: u64,
    pub jar: Jar,
}

/// A logged-out session's cookies, replayed at the end.
pub struct Revoked {
    pub jar: Jar,
    pub cid: String,
    /// When the logout was answered, after the start of the load.
    pub at: Duration,
    /// The instance that answered it.
    pub by: usize,
    /// The logout was answered before Redis was killed. (One answered later may still have
    /// been written before: answers can take a while to be read under load.)
    pub before_redis_restart: bool,
}

/// A token that must be refused, or (the control) accepted.
pub struct Forgery {
    pub kind: &'static str,
    pub token: String,
    /// The valid token: proves that forgeries are refused for what they are, not because
    /// the harness sends them wrongly.
    pub control: bool,
}

impl Forgery {
    fn cookie(&self) -> String {
        format!("{COOKIE_NAME}={}", self.token)
    }
}

/// Samples kept to a fixed size, each item with equal chance (reservoir sampling).
pub struct Reservoir<T> {
    items: Vec<T>,
    seen: u64,
    cap: usize,
}

impl<T> Reservoir<T> {
    fn push(&mut self, item: T, rng: &mut Rng) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(item);
        } else {
            let i = rng.below(self.seen);
            if let Some(slot) = self.items.get_mut(i as usize) {
                *slot = item;
            }
        }
    }
}

/// What the clients and the orchestrator share.
pub struct Shared {
    /// When the clients started.
    pub t0: Instant,
    /// When they stop, in milliseconds after `t0`; the orchestrator extends it so that every
    /// deploy and restart happens under load, however long they take.
    pub end_ms: AtomicU64,
    pub seed: u64,
    pub think_ms: u64,
    pub ramp_ms: u64,
    /// How long after a logout its cookie must be refused by every instance.
    pub grace: Duration,
    /// Odd while Redis is being restarted and the replicas resynchronise; bumped at the start
    /// and at the end of that window.
    pub disturbance: AtomicU64,
    pub redis_restarts: AtomicU64,
    /// Bumped each time an instance process is replaced.
    pub instance_gen: [AtomicU64; 2],
    /// The key ids, oldest first, to tell a move to a newer key from a move back.
    pub key_order: Vec<String>,
    pub forged: Vec<Forgery>,
    pub kept: Mutex<Vec<Live>>,
    pub revoked: Mutex<[Reservoir<Revoked>; 2]>,
}

impl Shared {
    /// The store of revoked cookies for [`Shared::revoked`]: `sweep_max` in all, half
    /// for logouts before the first Redis restart, half for those after.
    pub fn revoked_store(sweep_max: usize) -> Mutex<[Reservoir<Revoked>; 2]> {
        let reservoir = || Reservoir {
            items: Vec::new(),
            seen: 0,
            cap: (sweep_max / 2).max(1),
        };
        Mutex::new([reservoir(), reservoir()])
    }

    /// Whether the load is over.
    pub fn over(&self) -> bool {
        self.t0.elapsed().as_millis() as u64 >= self.end_ms.load(Ordering::Acquire)
    }

    fn disturbance(&self) -> u64 {
        self.disturbance.load(Ordering::Acquire)
    }

    /// The revoked cookies to replay at the end: a sample from before the first Redis
    /// restart, one from after, and how many logouts each was drawn from.
    pub fn take_revoked(&self) -> (Vec<Revoked>, [u64; 2]) {
        let mut r = self.revoked.lock().unwrap();
        let seen = [r[0].seen, r[1].seen];
        let mut all = std::mem::take(&mut r[0].items);
        all.append(&mut r[1].items);
        (all, seen)
    }

    fn key_rank(&self, id: &str) -> Option<usize> {
        self.key_order.iter().position(|k| k == id)
    }
}

/// The verdict on a session answer.
enum Verdict {
    Ok,
    Gone,
    Foreign,
    Counter,
}

fn verdict(body: &str, cid: &str, n: u64) -> Verdict {
    if body == "-" {
        return Verdict::Gone;
    }
    match body.split_once(' ') {
        Some((c, got)) if c == cid => match got.parse::<u64>() {
            Ok(got) if got == n => Verdict::Ok,
            _ => Verdict::Counter,
        },
        _ => Verdict::Foreign,
    }
}

/// Counts a failed check of a live session. `when` says where it was seen.
pub fn count_lost(net: &Net, live: &Live, r: &Reply, want: u64, when: &str) -> bool {
    let key = live.jar.key_id();
    let seen = || {
        format!(
            "{when}: {} (key {key}) on instance {}: want `{} {want}`, got `{}`",
            live.cid,
            ["A", "B"][r.inst],
            live.cid,
            r.body
        )
    };
    match verdict(&r.body, &live.cid, want) {
        Verdict::Ok => return false,
        Verdict::Gone => {
            bump(&net.c.lost_gone);
            net.sample("lost: no session", seen);
        }
        Verdict::Counter => {
            bump(&net.c.lost_counter);
            net.sample("lost: wrong counter", seen);
        }
        Verdict::Foreign => {
            bump(&net.c.foreign_session);
            net.sample("foreign session", seen);
        }
    }
    true
}

async fn think(rng: &mut Rng, max_ms: u64) {
    if max_ms > 0 {
        tokio::time::sleep(Duration::from_millis(rng.below(max_ms + 1))).await;
    }
}

/// Takes in an answer's cookies and counts a change of sealing key.
fn absorb(sh: &Shared, net: &Net, live: &mut Live, r: &Reply) {
    let before = live.jar.key_id();
    live.jar.absorb(&r.set_cookies);
    let after = live.jar.key_id();
    if before != after {
        match (sh.key_rank(&before), sh.key_rank(&after)) {
            (Some(b), Some(a)) if a > b => bump(&net.c.key_forward),
            (Some(_), Some(_)) => bump(&net.c.key_back),
            _ => {}
        }
    }
}

/// One logical client, until the load is over.
pub async fn client(id: usize, net: Arc<Net>, sh: Arc<Shared>) {
    let mut rng = Rng::new(sh.seed ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    tokio::time::sleep(Duration::from_millis(rng.below(sh.ramp_ms + 1))).await;
    let mut first_kept: Option<Live> = None;
    let mut last_kept: Option<Live> = None;
    let mut seq = 0u64;
    while !sh.over() {
        seq += 1;
        let cid = format!("c{id}.{seq}");
        let Some(mut live) = login(&net, &mut rng, cid).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ops = 3 + rng.below(28);
        let mut alive = true;
        for _ in 0..ops {
            if sh.over() {
                break;
            }
            think(&mut rng, sh.think_ms).await;
            if rng.percent(3) {
                tamper(&net, &mut rng, &live).await;
            }
            if rng.percent(1) {
                forge(&net, &mut rng, &sh).await;
            }
            let write = rng.percent(40);
            if !step(&net, &sh, &mut rng, &mut live, write).await {
                alive = false;
                break;
            }
        }
        if !alive {
            continue;
        }
        if sh.over() {
            last_kept = Some(live);
            break;
        }
        if rng.percent(40) {
            logout(&net, &sh, &mut rng, live).await;
        } else if first_kept.is_none() {
            first_kept = Some(live);
        } else {
            last_kept = Some(live);
        }
    }
    sh.kept
        .lock()
        .unwrap()
        .extend(first_kept.into_iter().chain(last_kept));
}

async fn login(net: &Net, rng: &mut Rng, cid: String) -> Option<Live> {
    let r = net
        .call_ok(rng, None, true, &format!("/login?c={cid}"), None)
        .await?;
    let mut live = Live {
        cid,
        n: 0,
        jar: Jar::default(),
    };
    live.jar.absorb(&r.set_cookies);
    if r.body != format!("{} 0", live.cid) || live.jar.token().is_none() {
        bump(&net.c.harness_errors);
        net.sample("harness", || {
            format!("login of {} answered `{}`", live.cid, r.body)
        });
        return None;
    }
    bump(&net.c.logins);
    Some(live)
}

/// One read or write; false when the session was lost.
async fn step(net: &Net, sh: &Shared, rng: &mut Rng, live: &mut Live, write: bool) -> bool {
    let (path, want) = if write {
        ("/incr", live.n + 1)
    } else {
        ("/me", live.n)
    };
    let cookie = live.jar.header();
    // Given up: counted there; the session is not known to be lost, so it goes on.
    let Some(r) = net.call_ok(rng, None, write, path, cookie.as_deref()).await else {
        return true;
    };
    bump(if write { &net.c.writes } else { &net.c.reads });
    if count_lost(net, live, &r, want, "during the run") {
        return false;
    }
    absorb(sh, net, live, &r);
    live.n = want;
    true
}

/// Sends a copy of the session cookie with one character changed; it must be refused.
async fn tamper(net: &Net, rng: &mut Rng, live: &Live) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let Some(token) = live.jar.token() else {
        return;
    };
    let mut bytes = token.as_bytes().to_vec();
    // Not the last characters, whose low bits base64 may not use.
    let i = rng.below(bytes.len().saturating_sub(3) as u64) as usize;
    let mut c = bytes[i];
    while c == bytes[i] {
        c = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
    }
    bytes[i] = c;
    let cookie = format!("{COOKIE_NAME}={}", String::from_utf8_lossy(&bytes));
    bump(&net.c.tamper_sent);
    if let Some(r) = net.call(rng, None, false, "/me", Some(&cookie)).await
        && r.shows_session()
    {
        bump(&net.c.tamper_accepted);
        net.sample("tampered cookie accepted", || {
            format!("position {i} of {}: `{}`", live.cid, r.body)
        });
    }
}

/// Sends one of the forged tokens.
async fn forge(net: &Net, rng: &mut Rng, sh: &Shared) {
    let f = &sh.forged[rng.below(sh.forged.len() as u64) as usize];
    if let Some(r) = net.call(rng, None, false, "/me", Some(&f.cookie())).await {
        judge_forgery(net, f, &r, &net.c.forged_sent, &net.c.forged_accepted);
    }
}

pub fn judge_forgery(net: &Net, f: &Forgery, r: &Reply, sent: &AtomicU64, accepted: &AtomicU64) {
    if f.control {
        if r.body != "forged-control 0" {
            bump(&net.c.control_refused);
            net.sample("control refused", || format!("`{}`", r.body));
        }
        return;
    }
    bump(sent);
    if r.shows_session() {
        bump(accepted);
        net.sample("forgery accepted", || format!("{}: `{}`", f.kind, r.body));
    }
}

/// Whether a replay that found the session accepted is a failure: yes, unless Redis was
/// being restarted at any time since the logout began (then the other instance may not have
/// heard yet; the final sweep checks again).
fn replay_failed(sh: &Shared, since: u64) -> bool {
    since.is_multiple_of(2) && sh.disturbance() == since
}

async fn logout(net: &Net, sh: &Shared, rng: &mut Rng, live: Live) {
    let since = sh.disturbance();
    let cookie = live.jar.header();
    let give_up = Instant::now() + GIVE_UP;
    // A logout that Redis could not record is a 503 (documented); the client tries again.
    let served = loop {
        let Some(r) = net
            .call(rng, None, true, "/logout", cookie.as_deref())
            .await
        else {
            return;
        };
        match r.status {
            StatusCode::OK => break r,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < give_up => {
                let now = sh.disturbance();
                if !now.is_multiple_of(2) || now != since {
                    bump(&net.c.http_503_logout);
                } else {
                    bump(&net.c.http_503_logout_redis_up);
                    net.sample("logout 503 with Redis up", || {
                        format!("{} on {}: {}", live.cid, ["A", "B"][r.inst], r.body)
                    });
                }
                tokio::time::sleep(Duration::from_millis(200 + rng.below(200))).await;
            }
            s => {
                bump(&net.c.harness_errors);
                net.sample("harness", || format!("logout of {} answered {s}", live.cid));
                return;
            }
        }
    };
    bump(&net.c.logouts);
    let logged_out_at = sh.t0.elapsed();
    let before_redis_restart = sh.redis_restarts.load(Ordering::Acquire) == 0;
    if !clears_session(&served.set_cookies) {
        bump(&net.c.harness_errors);
        net.sample("harness", || {
            format!("logout of {} did not clear the cookie", live.cid)
        });
    }
    // At once, on the instance that logged it out: it knows before it answers.
    let generation = sh.instance_gen[served.inst].load(Ordering::Acquire);
    if let Some(r) = net
        .call(rng, Some(served.inst), false, "/me", cookie.as_deref())
        .await
    {
        bump(&net.c.replay_same_checked);
        let same_process = sh.instance_gen[served.inst].load(Ordering::Acquire) == generation;
        if r.shows_session() {
            if same_process || replay_failed(sh, since) {
                bump(&net.c.replay_same_accepted);
                net.sample("replay accepted", || {
                    format!("{} at once on the instance that logged it out", live.cid)
                });
            } else {
                bump(&net.c.replay_deferred);
            }
        }
    }
    // After the grace period, on every instance.
    tokio::time::sleep(sh.grace).await;
    for inst in 0..2 {
        if let Some(r) = net
            .call(rng, Some(inst), false, "/me", cookie.as_deref())
            .await
        {
            bump(&net.c.replay_all_checked);
            if r.shows_session() {
                if replay_failed(sh, since) {
                    bump(&net.c.replay_all_accepted);
                    net.sample("replay accepted", || {
                        format!(
                            "{} on instance {inst} {:?} after logout",
                            live.cid, sh.grace
                        )
                    });
                } else {
                    bump(&net.c.replay_deferred);
                }
            }
        }
    }
    let mut revoked = sh.revoked.lock().unwrap();
    revoked[usize::from(!before_redis_restart)].push(
        Revoked {
            jar: live.jar,
            cid: live.cid,
            at: logged_out_at,
            by: served.inst,
            before_redis_restart,
        },
        rng,
    );
}

/// Tokens that must be refused, plus one valid control, made with the harness's own keys.
/// `ring` is a ring every deployment of the run holds (the oldest key).
pub fn forgeries(ring: &Keyring, rng: &mut Rng) -> Vec<Forgery> {
    use base64::Engine as _;
    let now = sealed_session::Clock::now(&sealed_session::SystemClock);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let state = |kind: &str, issued: Timestamp, last_seen: Timestamp, deadline: Timestamp| {
        let mut s = SessionState::new(SessionId::generate().unwrap(), issued, deadline);
        s.set_last_seen(last_seen);
        s.insert("c", &format!("forged-{kind}")).unwrap();
        s.insert("n", &0u64).unwrap();
        s
    };
    let ago = |d: Duration| Timestamp::from_millis(now.as_millis() - d.as_millis() as u64);
    let fresh = |kind: &str| state(kind, now, now, now.saturating_add(hours(1)));
    let sealed = SealedCodec::new(ring.clone());
    let name = COOKIE_NAME.as_bytes();
    let alien = |id: &str| {
        SealedCodec::new(
            Keyring::new([Key::generate(id, sealed_session::Algorithm::Aes256Gcm).unwrap()])
                .unwrap(),
        )
    };
    let random: Vec<u8> = (0..160).map(|_| rng.next() as u8).collect();
    let valid = sealed.seal(&fresh("truncated"), name).unwrap();
    let mut out = vec![
        (
            "random bytes",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random),
        ),
        (
            "same key id, other key",
            alien(ring.primary_id())
                .seal(&fresh("other-key"), name)
                .unwrap(),
        ),
        (
            "unknown key id",
            alien("k99").seal(&fresh("unknown-key"), name).unwrap(),
        ),
        (
            "expired",
            sealed
                .seal(
                    &state("expired", ago(hours(25)), ago(hours(2)), ago(hours(1))),
                    name,
                )
                .unwrap(),
        ),
        (
            "idle",
            sealed
                .seal(
                    &state(
                        "idle",
                        ago(hours(2)),
                        ago(hours(2)),
                        now.saturating_add(hours(20)),
                    ),
                    name,
                )
                .unwrap(),
        ),
        (
            "other cookie name",
            sealed.seal(&fresh("other-name"), b"sid").unwrap(),
        ),
        (
            "signed, not sealed",
            SignedCodec::new(ring.clone())
                .seal(&fresh("signed"), name)
                .unwrap(),
        ),
        ("truncated", valid[..valid.len() - 4].to_owned()),
    ]
    .into_iter()
    .map(|(kind, token)| Forgery {
        kind,
        token,
        control: false,
    })
    .collect::<Vec<_>>();
    out.push(Forgery {
        kind: "control",
        token: sealed.seal(&fresh("control"), name).unwrap(),
        control: true,
    });
    out
}
