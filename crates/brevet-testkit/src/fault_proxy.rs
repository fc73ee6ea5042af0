//! A TCP proxy that injects network faults between Brevet and a real target (PostgreSQL, the
//! moto emulator, sshd): it forwards each connection to an upstream address and, at a seeded
//! rate, when a connection is accepted and for each chunk of data a client sends (one query or
//! HTTP request, most often), instead resets it, stalls it (holds it open and silent, as a black
//! hole in the network does), delays it, or cuts it mid-stream (the request goes through, the
//! answer is cut off part way). A failing run is repeated with the same seed, up to thread
//! scheduling.
//!
//! Stalled connections stay stalled when faults are turned off, as they do behind a real black
//! hole: a client must give up on them itself.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};

/// What the proxy does to a faulted connection or chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// Closes both sides at once with a reset (RST); the chunk is not forwarded.
    Reset,
    /// Forwards nothing more either way and holds the connection open: the client waits until
    /// it gives up.
    Stall,
    /// Holds the chunk (or the new connection) this long, then forwards it.
    Delay(Duration),
    /// Forwards the chunk, then cuts the connection part way through the answer.
    Cut,
}

impl NetFault {
    /// The kind of fault, as counted by [`FaultProxy::faulted`].
    pub fn kind(&self) -> &'static str {
        match self {
            NetFault::Reset => "reset",
            NetFault::Stall => "stall",
            NetFault::Delay(_) => "delay",
            NetFault::Cut => "cut",
        }
    }
}

#[derive(Default)]
struct Plan {
    faults: Vec<NetFault>,
    rate: f64,
    /// Every new connection stalls, whatever the rate.
    blackhole: bool,
}

struct Shared {
    upstream: String,
    plan: Mutex<Plan>,
    rng: Mutex<StdRng>,
    faulted: Mutex<BTreeMap<&'static str, u64>>,
    connections: AtomicU64,
    /// Every socket the proxy holds (both ends of forwarded connections, and stalled clients),
    /// to cut them all at once.
    open: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Draws whether this connection or chunk is faulted, and how.
    fn draw(&self) -> Option<NetFault> {
        let plan = lock(&self.plan);
        if plan.faults.is_empty() {
            return None;
        }
        let mut rng = lock(&self.rng);
        if !rng.gen_bool(plan.rate.clamp(0.0, 1.0)) {
            return None;
        }
        let fault = plan.faults[rng.gen_range(0..plan.faults.len())];
        drop(rng);
        drop(plan);
        *lock(&self.faulted).entry(fault.kind()).or_default() += 1;
        Some(fault)
    }

    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            lock(&self.open).push(c);
        }
    }
}

/// A running proxy; it stops accepting, and cuts what it holds, when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`), with no
    /// faults until [`FaultProxy::set`].
    pub fn start(upstream: &str, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free local port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            plan: Mutex::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            faulted: Mutex::default(),
            connections: AtomicU64::new(0),
            open: Mutex::default(),
            stopped: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || serve(shared, client));
            }
        });
        FaultProxy { addr, shared }
    }

    /// The proxy's address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, `rate` (0..=1) of new connections and of the chunks clients send get one of
    /// `faults`, picked at random.
    pub fn set(&self, faults: &[NetFault], rate: f64) {
        let mut plan = lock(&self.shared.plan);
        plan.faults = faults.to_vec();
        plan.rate = rate;
    }

    /// From now on, everything is forwarded (and the black hole, if any, is gone). Connections
    /// stalled so far stay stalled.
    pub fn clear(&self) {
        *lock(&self.shared.plan) = Plan::default();
    }

    /// From now on every new connection stalls, and every open one is cut.
    pub fn blackhole(&self) {
        lock(&self.shared.plan).blackhole = true;
        self.cut_all();
    }

    /// Cuts every connection the proxy holds (forwarded or stalled).
    pub fn cut_all(&self) {
        for s in lock(&self.shared.open).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Faults injected so far, by kind ([`NetFault::kind`]).
    pub fn faulted(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.shared.faulted).clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut_all();
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Closes `s` with a reset rather than an orderly FIN.
fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(Shutdown::Both);
}

/// One client connection: a fault when it is accepted, then two pumps.
fn serve(shared: Arc<Shared>, client: TcpStream) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    if shared.stopped.load(Ordering::SeqCst) {
        return;
    }
    let blackhole = lock(&shared.plan).blackhole;
    let first = if blackhole {
        Some(NetFault::Stall)
    } else {
        shared.draw()
    };
    match first {
        Some(NetFault::Reset) => return reset(&client),
        // Closed before a byte went through: the client sees the connection end at once.
        Some(NetFault::Cut) => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(NetFault::Stall) => {
            // Held open and silent until the client gives up or the proxy is told to cut it.
            shared.keep(&client);
            return;
        }
        Some(NetFault::Delay(d)) => std::thread::sleep(d),
        None => {}
    }
    let Ok(server) = TcpStream::connect(&shared.upstream) else {
        return reset(&client);
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    shared.keep(&client);
    shared.keep(&server);
    let conn = Arc::new(Conn::default());
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return reset(&client);
    };
    {
        let (shared, conn) = (shared.clone(), conn.clone());
        std::thread::spawn(move || answers(shared, conn, s2, c2));
    }
    requests(shared, conn, client, server);
}

/// What the two pumps of one connection share.
#[derive(Default)]
struct Conn {
    /// Nothing more is forwarded either way.
    stalled: AtomicBool,
    /// The next answer is cut part way.
    cut: AtomicBool,
}

/// Client → upstream, drawing a fault per chunk.
fn requests(shared: Arc<Shared>, conn: Arc<Conn>, mut client: TcpStream, mut server: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if conn.stalled.load(Ordering::SeqCst) {
            continue; // swallowed
        }
        match shared.draw() {
            Some(NetFault::Reset) => {
                reset(&client);
                reset(&server);
                return;
            }
            Some(NetFault::Stall) => {
                conn.stalled.store(true, Ordering::SeqCst);
                continue;
            }
            Some(NetFault::Delay(d)) => std::thread::sleep(d),
            Some(NetFault::Cut) => conn.cut.store(true, Ordering::SeqCst),
            None => {}
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Upstream → client, cutting an answer part way when a request said so.
fn answers(_shared: Arc<Shared>, conn: Arc<Conn>, mut server: TcpStream, mut client: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if conn.stalled.load(Ordering::SeqCst) {
            continue; // swallowed
        }
        if conn.cut.swap(false, Ordering::SeqCst) {
            let _ = client.write_all(&buf[..n / 2]);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !conn.stalled.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers each chunk with the same bytes.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(proxy: &FaultProxy, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(proxy.addr())?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        let mut at = 0;
        while at < got.len() {
            match s.read(&mut got[at..])? {
                0 => break,
                n => at += n,
            }
        }
        got.truncate(at);
        Ok(got)
    }

    #[test]
    fn forwards_unchanged_without_faults() {
        let proxy = FaultProxy::start(&echo().to_string(), 1);
        assert_eq!(round_trip(&proxy, b"hello").unwrap(), b"hello");
        assert!(proxy.faulted().is_empty());
    }

    #[test]
    fn each_fault_does_what_it_says() {
        let proxy = FaultProxy::start(&echo().to_string(), 1);
        proxy.set(&[NetFault::Stall], 1.0);
        let e = round_trip(&proxy, b"hello").unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "a stalled connection answers nothing: {e}"
        );
        proxy.set(&[NetFault::Reset], 1.0);
        match round_trip(&proxy, b"hello") {
            Ok(got) => assert!(got.is_empty(), "{got:?}"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ),
                "{e}"
            ),
        }
        // A cut decided for the request (the connection drawn clean): half an answer, then EOF.
        proxy.clear();
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        proxy.set(&[NetFault::Cut], 1.0);
        s.write_all(b"abcdefgh").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(got, b"abcd", "half the answer, then the end");
        proxy.set(&[NetFault::Delay(Duration::from_millis(300))], 1.0);
        let t = std::time::Instant::now();
        // Delayed twice (connection and chunk), within the client's patience per read.
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        s.write_all(b"slow").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"slow");
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        let faulted = proxy.faulted();
        for kind in ["stall", "reset", "cut", "delay"] {
            assert!(faulted.get(kind).copied().unwrap_or(0) >= 1, "{faulted:?}");
        }
    }

    #[test]
    fn a_rate_faults_about_that_share_and_a_black_hole_stalls_everything() {
        let proxy = FaultProxy::start(&echo().to_string(), 7);
        proxy.set(&[NetFault::Reset], 0.3);
        let ok = (0..200)
            .filter(|_| round_trip(&proxy, b"x").is_ok_and(|g| g == b"x"))
            .count();
        // Each exchange passes two draws (connection, chunk): 0.7² ≈ 49 % get through.
        assert!((70..=130).contains(&ok), "{ok} of 200 went through");
        proxy.clear();
        assert_eq!(round_trip(&proxy, b"x").unwrap(), b"x");
        proxy.blackhole();
        assert!(round_trip(&proxy, b"x").is_err());
        proxy.clear();
        assert_eq!(round_trip(&proxy, b"x").unwrap(), b"x");
    }
}
