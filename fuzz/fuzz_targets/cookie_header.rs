#![no_main]
libfuzzer_sys::fuzz_target!(init: sealed_session_fuzz::init("cookie_header"), |data: &[u8]| {
    sealed_session_fuzz::http::cookie_header(data);
});
