//! The HTTP/1.1 framing watcher (`gateway/src/http/framing.rs`) on arbitrary
//! byte streams. It must never panic and never let how the stream was cut
//! into reads change what it finds: the flagged request, the number of
//! heads and whether it still watches are the same for one read, for
//! reads of one byte and for the reads the input asks for.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use stadttor_gateway::http::framing::watch_reads;

const LIMIT: usize = 512;

fuzz_target!(|data: &[u8]| {
    // First byte: how many read lengths follow (one byte each).
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (lens, stream) = rest.split_at(k);
    let reads: Vec<usize> = lens.iter().map(|&b| usize::from(b)).collect();
    let whole = watch_reads(stream, &[], LIMIT);
    let split = watch_reads(stream, &reads, LIMIT);
    assert_eq!(whole, split, "reads {reads:?}");
    let bytewise = watch_reads(stream, &vec![1; stream.len()], LIMIT);
    assert_eq!(whole, bytewise, "byte by byte");
});
