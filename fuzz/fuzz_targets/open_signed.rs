#![no_main]
libfuzzer_sys::fuzz_target!(init: sealed_session_fuzz::init("open_signed"), |data: &[u8]| {
    sealed_session_fuzz::codecs::open_signed(data);
});
