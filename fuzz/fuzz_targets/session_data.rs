#![no_main]
libfuzzer_sys::fuzz_target!(init: sealed_session_fuzz::init("session_data"), |data: &[u8]| {
    sealed_session_fuzz::data::session_data(data);
});
