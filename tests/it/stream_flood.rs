//! An HTTP/2 stream flood: one TLS connection opens stream after stream
//! (GET /health) and reads none of the answers, ignoring the 128 streams
//! it was told it may open. Without a limit, actix-http starts every one
//! and each answer waits in memory for the client's flow-control window
//! (20,000 streams took latchd from 32 to 136 MB). The connection is cut
//! once far more than 128 are being answered, and latchd's memory stays
//! where it was; the client is told why (GOAWAY ENHANCE_YOUR_CALM) when
//! its connection has room for it.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::connections::{closed_within, raw_h2, read_until_closed};
use crate::flows::metric;
use crate::harness::{Latchd, rss_kib};
use crate::reliability::Table;

const STREAMS: u32 = 20_000;
const BATCH: u32 = 500;

/// A HEADERS frame for `GET https://localhost/health` on stream `id`,
/// ending the stream; its header block uses the static table and literals
/// only, so every frame stands alone.
fn get_health(id: u32) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    block.extend([0x04, 7]); // :path, not indexed
    block.extend(b"/health");
    block.extend([0x01, 9]); // :authority, not indexed
    block.extend(b"localhost");
    let mut frame = vec![0, 0, block.len() as u8, 0x1, 0x4 | 0x1];
    frame.extend(id.to_be_bytes());
    frame.extend(block);
    frame
}

/// Samples `pid`'s resident memory until told to stop; returns the peak.
fn sample_peak(pid: i32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::SeqCst) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_http2_streams_is_cut_off_and_memory_holds() {
    let d = Latchd::start().await;
    assert_eq!(d.client_h2().get(d.https_url("/health")).send().await.unwrap().status(), 200);
    let before = rss_kib(d.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(d.pid(), Arc::clone(&stop));

    let mut flood = raw_h2(&d);
    let started = Instant::now();
    let mut written = 0;
    while written < STREAMS {
        let batch: Vec<u8> = (written..written + BATCH).flat_map(|n| get_health(2 * n + 1)).collect();
        if flood.write_all(&batch).and_then(|()| flood.flush()).is_err() {
            break;
        }
        written += BATCH;
    }
    let cut = closed_within(&mut flood, Duration::from_secs(10)).map(|_| started.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let peak = sampler.join().unwrap();

    let mut table = Table::new(
        &format!("HTTP/2 stream flood (one connection, up to {STREAMS} streams, no answer read)"),
        &["measure", "value"],
    );
    table.row(&["streams written before the cut", &written.to_string()]);
    let cut_ms = cut.map_or("not cut".into(), |t| format!("{:.0}", t.as_secs_f64() * 1e3));
    table.row(&["connection cut after, ms", &cut_ms]);
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    table.row(&["latchd RSS before / peak, MiB", &format!("{} / {}", mib(before), mib(peak))]);
    table.publish("stream-flood");

    assert!(cut.is_some(), "the flooding connection was not cut");
    d.log_with("HTTP/2 client opened streams far beyond the limit").await;
    assert_eq!(metric(&d, "latch_http_connections_cut_total{reason=\"stream_limit\"}").await, 1.0);
    assert!(peak < before + 24 * 1024, "RSS {} → {} MiB under the flood", mib(before), mib(peak));
    let after = d.client_h2().get(d.https_url("/health")).send().await.unwrap();
    assert_eq!(after.status(), 200, "another connection is served after the cut");
}

/// The whole HTTP/2 frames in `bytes`, as (type, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (mut frames, mut rest) = (Vec::new(), bytes);
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let Some(payload) = rest.get(9..9 + len) else { break };
        frames.push((rest[3], payload.to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

/// A client that lets no answer's body out (a zero stream window, so every
/// request stays being answered) and opens 300 streams is cut, and the
/// last thing it reads says why: GOAWAY with ENHANCE_YOUR_CALM,
/// naming the largest stream id so that it retries nothing on its own.
#[tokio::test]
async fn a_client_cut_for_its_streams_is_told_why() {
    let d = Latchd::start().await;
    let mut flood = raw_h2(&d);
    flood.write_all(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap(); // INITIAL_WINDOW_SIZE 0
    let streams: Vec<u8> = (0..300).flat_map(|n| get_health(2 * n + 1)).collect();
    flood.write_all(&streams).and_then(|()| flood.flush()).unwrap();

    let frames = frames(&read_until_closed(&mut flood, Duration::from_secs(10)).0);
    let last = frames.last().expect("frames from the server");
    assert_eq!(last.0, 0x7, "the last frame is a GOAWAY: {:?}", &frames[frames.len().saturating_sub(3)..]);
    assert_eq!(last.1, [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0xb], "ENHANCE_YOUR_CALM, largest stream id");
    d.log_with("HTTP/2 client opened streams far beyond the limit").await;
}
