//! What one request pays for session middleware, with a 200-byte session, read-only and
//! modified: no sessions, sealed-session (sealed AES-256-GCM), and Poem's own CookieSession
//! (private), in one run. `cargo bench --bench middleware`; ratios by
//! `python3 benches/ratios.py middleware`.
//!
//! Requests are made in memory and handed straight to the endpoint (no sockets), so the
//! difference between a row and `none` is what the middleware adds to a request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use poem::http::HeaderValue;
use poem::http::header::{COOKIE, SET_COOKIE};
use poem::session::{CookieConfig as PoemCookieConfig, CookieSession, Session as PoemSession};
use poem::web::cookie::CookieKey;
use poem::{Endpoint, EndpointExt, Request, Route, get, handler};
use sealed_session::{Keyring, SealedSession, Session};

/// About 200 bytes of session data as JSON.
fn data() -> serde_json::Value {
    serde_json::json!({
        "user": "alice@example.com",
        "roles": ["admin", "editor"],
        "csrf": "Qm9vdHN0cmFwIGEgY3NyZiB0b2tlbiBoZXJl",
        "cart": [101, 202, 303],
        "theme": "dark",
        "views": 1
    })
}

#[handler]
fn ours_read(session: &Session) -> String {
    format!("{:?}", session.get::<String>("user").ok().flatten())
}
/// What applications read on most requests: who the user is (an object) and a counter.
struct User {
    user: String,
    roles: Vec<String>,
}
#[handler]
fn ours_app_read(session: &Session) -> poem::Result<String> {
    let user = User {
        user: session.get("user")?.unwrap_or_default(),
        roles: session.get("roles")?.unwrap_or_default(),
    };
    let views = session.get::<u64>("views")?.unwrap_or(0);
    Ok(format!("{} {} {views}", user.user, user.roles.len()))
}
#[handler]
fn ours_write(session: &Session) -> poem::Result<String> {
    let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", &n)?;
    Ok(n.to_string())
}
#[handler]
fn ours_seed(session: &Session) -> poem::Result<()> {
    if let serde_json::Value::Object(m) = data() {
        for (k, v) in m {
            session.insert(&k, &v)?;
        }
    }
    Ok(())
}
/// A login: a new id, the data, and the user as the subject (so that "your devices"
/// records it).
#[handler]
fn ours_login(session: &Session) -> poem::Result<()> {
    session.regenerate()?;
    if let serde_json::Value::Object(m) = data() {
        for (k, v) in m {
            session.insert(&k, &v)?;
        }
    }
    session.set_subject("alice@example.com");
    Ok(())
}
#[handler]
fn poem_read(session: &PoemSession) -> String {
    format!("{:?}", session.get::<String>("user"))
}
#[handler]
fn poem_app_read(session: &PoemSession) -> String {
    let user = User {
        user: session.get("user").unwrap_or_default(),
        roles: session.get("roles").unwrap_or_default(),
    };
    let views = session.get::<u64>("views").unwrap_or(0);
    format!("{} {} {views}", user.user, user.roles.len())
}
#[handler]
fn poem_write(session: &PoemSession) -> String {
    let n = session.get::<u64>("views").unwrap_or(0) + 1;
    session.set("views", n);
    n.to_string()
}
#[handler]
fn poem_seed(session: &PoemSession) {
    if let serde_json::Value::Object(m) = data() {
        for (k, v) in m {
            session.set(&k, v);
        }
    }
}
#[handler]
fn none_read() -> String {
    format!("{:?}", Some("alice@example.com"))
}

fn routes_ours() -> Route {
    Route::new()
        .at("/read", get(ours_read))
        .at("/app_read", get(ours_app_read))
        .at("/write", get(ours_write))
        .at("/seed", get(ours_seed))
        .at("/login", get(ours_login))
}
fn routes_poem() -> Route {
    Route::new()
        .at("/read", get(poem_read))
        .at("/app_read", get(poem_app_read))
        .at("/write", get(poem_write))
        .at("/seed", get(poem_seed))
}

async fn cookie_of(ep: &impl Endpoint) -> String {
    let resp = ep
        .get_response(Request::builder().uri_str("/seed").finish())
        .await;
    let v = resp.headers().get(SET_COOKIE).expect("seed sets a cookie");
    let v = v.to_str().expect("ascii");
    v.split(';').next().expect("name=value").to_owned()
}

/// A request with `cookie`; the cookie the answer sets, if any, replaces it, as a browser's
/// would: a chain of writes, each carrying the token the previous one made. The chain's own
/// work is kept to what the server cannot avoid either: the header value is checked once,
/// as `call` checks its `&str` (the same loop over as many bytes), and the answer's
/// `Set-Cookie` is cut at its first `;` with `memchr` and copied, without a second check of
/// its bytes. Otherwise the chain would add its own parsing (about 900 instructions) to what
/// the middleware is counted to add.
async fn call_chained<E: Endpoint + ?Sized>(ep: &E, path: &str, cookie: &mut Vec<u8>) {
    let req = Request::builder()
        .uri_str(path)
        .header(
            COOKIE,
            HeaderValue::from_bytes(cookie).expect("a cookie the server set"),
        )
        .finish();
    let resp = ep.get_response(req).await;
    if let Some(v) = resp.headers().get(SET_COOKIE).map(HeaderValue::as_bytes) {
        let end = memchr::memchr(b';', v).unwrap_or(v.len());
        cookie.clear();
        cookie.extend_from_slice(v.get(..end).unwrap_or(v));
    }
    black_box(resp);
}

async fn call<E: Endpoint + ?Sized>(ep: &E, path: &str, cookie: &str) {
    let req = Request::builder()
        .uri_str(path)
        .header(COOKIE, cookie)
        .finish();
    let resp = ep.get_response(req).await;
    black_box(resp);
}

/// `sealed_session_deny` (a `MemoryDenylist`) and `sealed_session_devices` (the same and
/// "your devices" on a `MemoryRegistry`) take their cookie from `/login` (a subject), and
/// have `login` too: what a login and a re-issue pay for the registry.
///
/// With `SS_COUNT=<variant>/<read|app_read|write|write_chain|login>` set (for example `sealed_session/write`), runs
/// that one case a fixed number of times and exits, for `benches/instructions.sh`, which
/// counts instructions per request under valgrind: a measure the machine's load cannot move.
fn count_mode(rt: &tokio::runtime::Runtime, apps: &Apps, case: &str) {
    let iters: usize = std::env::var("SS_COUNT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (variant, op) = case.split_once('/').expect("variant/op");
    // `write_chain`: the write route, each request with the cookie the previous one set.
    let chained = op == "write_chain";
    let path = if chained {
        "/write".to_owned()
    } else {
        format!("/{op}")
    };
    rt.block_on(async {
        let (ep, cookie) = match variant {
            "none" => (&apps.none, &apps.none_cookie),
            "sealed_session" => (&apps.ours, &apps.ours_cookie),
            "sealed_session_nocache" => (&apps.ours_nocache, &apps.ours_cookie),
            "poem_cookie_session" => (&apps.poem, &apps.poem_cookie),
            "sealed_session_deny" => (&apps.deny, &apps.deny_cookie),
            "sealed_session_devices" => (&apps.devices, &apps.devices_cookie),
            other => panic!("unknown variant {other}"),
        };
        let mut chain = cookie.clone().into_bytes();
        for _ in 0..iters {
            if chained {
                call_chained(&**ep, &path, &mut chain).await;
            } else {
                call(&**ep, &path, cookie).await;
            }
        }
    });
}

struct Apps {
    ours: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    /// The same middleware with the open cache off.
    ours_nocache: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    poem: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    none: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    ours_cookie: String,
    poem_cookie: String,
    none_cookie: String,
    deny: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    deny_cookie: String,
    devices: Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>,
    devices_cookie: String,
}

/// The cookie `/login` sets.
async fn login_cookie_of(ep: &impl Endpoint) -> String {
    let resp = ep
        .get_response(Request::builder().uri_str("/login").finish())
        .await;
    let v = resp.headers().get(SET_COOKIE).expect("login sets a cookie");
    let v = v.to_str().expect("ascii");
    v.split(';').next().expect("name=value").to_owned()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let keys = Keyring::from_secret("bench secret bench secret bench secret!!").expect("key");
    let ours = routes_ours().with(SealedSession::sealed(keys.clone()));
    let ours_nocache = routes_ours().with(SealedSession::sealed(keys).open_cache(0));
    let poem = routes_poem().with(CookieSession::new(PoemCookieConfig::private(
        CookieKey::generate(),
    )));
    let none = Route::new()
        .at("/read", get(none_read))
        .at("/app_read", get(none_read))
        .at("/write", get(none_read));
    let ours_cookie = rt.block_on(cookie_of(&ours));
    let poem_cookie = rt.block_on(cookie_of(&poem));
    // Make the baseline carry a cookie header of the same size.
    let none_cookie = ours_cookie.clone();
    eprintln!(
        "cookie sizes: sealed-session {} bytes, poem CookieSession {} bytes",
        ours_cookie.len(),
        poem_cookie.len()
    );

    if let Ok(case) = std::env::var("SS_COUNT") {
        use std::sync::Arc;
        let keys = Keyring::from_secret("bench secret bench secret bench secret!!").expect("key");
        let deny = routes_ours().with(
            SealedSession::sealed(keys.clone())
                .denylist(Arc::new(sealed_session::denylist::MemoryDenylist::new())),
        );
        let devices = routes_ours().with(
            SealedSession::sealed(keys)
                .denylist(Arc::new(sealed_session::denylist::MemoryDenylist::new()))
                .devices(sealed_session::devices::Devices::new(Arc::new(
                    sealed_session::devices::MemoryRegistry::new(),
                ))),
        );
        let deny_cookie = rt.block_on(login_cookie_of(&deny));
        let devices_cookie = rt.block_on(login_cookie_of(&devices));
        let apps = Apps {
            deny: Box::new(poem::endpoint::ToDynEndpoint(deny.map_to_response())),
            deny_cookie,
            devices: Box::new(poem::endpoint::ToDynEndpoint(devices.map_to_response())),
            devices_cookie,
            ours: Box::new(poem::endpoint::ToDynEndpoint(ours.map_to_response())),
            ours_nocache: Box::new(poem::endpoint::ToDynEndpoint(
                ours_nocache.map_to_response(),
            )),
            poem: Box::new(poem::endpoint::ToDynEndpoint(poem.map_to_response())),
            none: Box::new(poem::endpoint::ToDynEndpoint(none.map_to_response())),
            ours_cookie,
            poem_cookie,
            none_cookie,
        };
        count_mode(&rt, &apps, &case);
        std::process::exit(0);
    }
    let mut g = c.benchmark_group("middleware");
    for path in ["/read", "/write"] {
        let label = path.trim_start_matches('/');
        g.bench_function(format!("none/{label}"), |b| {
            b.to_async(&rt).iter(|| call(&none, path, &none_cookie))
        });
        g.bench_function(format!("sealed_session/{label}"), |b| {
            b.to_async(&rt).iter(|| call(&ours, path, &ours_cookie))
        });
        g.bench_function(format!("poem_cookie_session/{label}"), |b| {
            b.to_async(&rt).iter(|| call(&poem, path, &poem_cookie))
        });
    }
    // Reads as a busy server sees them: the caches evicted between requests.
    bench_cold(&mut g, &rt, "none/read_cold", &none, &none_cookie);
    bench_cold(&mut g, &rt, "sealed_session/read_cold", &ours, &ours_cookie);
    bench_chain(
        &mut g,
        &rt,
        "sealed_session/write_chain",
        &ours,
        &ours_cookie,
    );
    bench_chain(
        &mut g,
        &rt,
        "sealed_session_nocache/write_chain",
        &ours_nocache,
        &ours_cookie,
    );
    bench_chain(
        &mut g,
        &rt,
        "poem_cookie_session/write_chain",
        &poem,
        &poem_cookie,
    );
    g.finish();
}

/// Reads with the CPU caches evicted before each (by writing a buffer larger than the L2
/// cache), as in a server, where the kernel's networking and the HTTP stack run between two
/// requests of a session: what a request touches is fetched again. Only the request is
/// timed. In a loop of identical requests everything stays in the L1 cache, and the
/// difference between a row and `none` is smaller than what a server measures.
fn bench_cold<E: Endpoint>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    ep: &E,
    cookie: &str,
) {
    g.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let mut junk = vec![0u8; 4 << 20];
            async move {
                let mut total = std::time::Duration::ZERO;
                for i in 0..iters {
                    // One write per cache line, a different value each time.
                    for line in junk.chunks_mut(64) {
                        if let Some(b) = line.first_mut() {
                            *b = b.wrapping_add(i as u8 | 1);
                        }
                    }
                    black_box(&junk);
                    let t = std::time::Instant::now();
                    call(ep, "/read", cookie).await;
                    total += t.elapsed();
                }
                total
            }
        })
    });
}

/// Writes as a browser makes them: each with the cookie the previous one set, so that with
/// the open cache the token arriving is the one just sealed.
fn bench_chain<E: Endpoint>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    ep: &E,
    first: &str,
) {
    g.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let mut cookie = first.as_bytes().to_vec();
            async move {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    call_chained(ep, "/write", &mut cookie).await;
                }
                t.elapsed()
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
