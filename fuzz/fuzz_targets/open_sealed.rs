#![no_main]
libfuzzer_sys::fuzz_target!(init: sealed_session_fuzz::init("open_sealed"), |data: &[u8]| {
    sealed_session_fuzz::codecs::open_sealed(data);
});
