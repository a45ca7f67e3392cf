#![no_main]
libfuzzer_sys::fuzz_target!(init: sealed_session_fuzz::init("authorization_header"), |data: &[u8]| {
    sealed_session_fuzz::http::authorization_header(data);
});
