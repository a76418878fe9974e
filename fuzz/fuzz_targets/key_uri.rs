#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dfns_signer::fuzzing::key_uri(data);
});
