//! Self-tests of the standard-driven DPoP test client (`tests/common/dpop_client.rs`), with
//! no server: the published examples of RFC 7638, RFC 9449, RFC 8037, RFC 7515 and RFC 4231,
//! the shape RFC 9449 §4.2 requires of every proof it makes, each attack knob, and the
//! `WWW-Authenticate` / `DPoP-Nonce` handling of RFC 9449 §7.1, §8 and §9.
#![cfg(feature = "jwt")]

mod common {
    pub mod dpop_client;
}

use std::collections::HashSet;

use common::dpop_client::{
    Alg, DpopKey, JwkHeader, ProofSpec, Sig, ath, b64u, b64u_decode, canonical_jwk, challenge_of,
    challenges, decode, hmac_sha256, htu_of, jwk_thumbprint, nonce_of, verify_self_signed,
    verify_with_jwk, wants_nonce, wants_nonce_with_body,
};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// RFC 7638 §3.1: the example RSA key (from RFC 7517 Appendix A.1) and its thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

// RFC 9449: the example proof key of Figures 2, 4, 13 and 14, and its `jkt` (Figure 9, "the
// hash of the public key from the DPoP proofs in the examples shown in Section 5").
const RFC9449_X: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
const RFC9449_Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
// RFC 9449 §5 Figure 6 / §7.1 Figure 13: the access token, and Figure 14's `ath` of it.
const RFC9449_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC9449_ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
// RFC 9449 §4.1 Figure 2 (the token request proof), RFC 8792 line wrapping undone.
const RFC9449_FIGURE_2: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
    "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia",
    "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg",
    "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
);
// RFC 9449 §7.1 Figure 13 (the protected resource request proof), unwrapped.
const RFC9449_FIGURE_13: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj",
    "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z",
    "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF",
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E",
    "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA",
);

// RFC 8037 Appendix A.1-A.4: the Ed25519 key, its thumbprint (A.3), the JWS of A.4.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const RFC8037_JWS: &str = concat!(
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.",
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
);

// RFC 7515 Appendix A.3: the ES256 example key and JWS.
const RFC7515_A3_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
const RFC7515_A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const RFC7515_A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const RFC7515_A3_JWS: &str = concat!(
    "eyJhbGciOiJFUzI1NiJ9.",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
);

const URL: &str = "https://api.example.test/api/me";
const T: u64 = 1_764_000_000;

fn rfc9449_jwk() -> Value {
    json!({"kty": "EC", "x": RFC9449_X, "y": RFC9449_Y, "crv": "P-256"})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flips one bit in the middle of a base64url segment's bytes and re-encodes it.
fn tampered(segment: &str) -> String {
    let mut bytes = b64u_decode(segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    b64u(bytes)
}

fn keys() -> [DpopKey; 2] {
    Alg::ALL.map(DpopKey::generate)
}

// ---- RFC 7638 -----------------------------------------------------------------------------

#[test]
fn rfc7638_worked_example_thumbprint_matches() {
    // The JWK of §3.1, with its optional members `alg` and `kid`, which the thumbprint ignores.
    let jwk =
        json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
    assert_eq!(
        canonical_jwk(&jwk).unwrap(),
        format!(r#"{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}"#)
    );
    assert_eq!(jwk_thumbprint(&jwk).unwrap(), RFC7638_THUMBPRINT);
}

#[test]
fn rfc7638_canonical_form_keeps_only_required_members_in_order_for_ec_and_okp() {
    let ec = json!({"y": "Y", "x": "X", "use": "sig", "kty": "EC", "crv": "P-256", "d": "secret"});
    assert_eq!(
        canonical_jwk(&ec).unwrap(),
        r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#
    );
    let okp = json!({"x": "X", "kty": "OKP", "d": "secret", "crv": "Ed25519", "alg": "EdDSA"});
    assert_eq!(
        canonical_jwk(&okp).unwrap(),
        r#"{"crv":"Ed25519","kty":"OKP","x":"X"}"#
    );
}

#[test]
fn rfc7638_canonical_form_refuses_incomplete_or_unknown_keys() {
    for bad in [
        json!({"kty": "EC", "crv": "P-256", "x": "X"}),
        json!({"kty": "EC", "crv": "P-256", "x": "X", "y": 5}),
        json!({"kty": "OKP", "x": "X"}),
        json!({"kty": "RSA", "n": "N"}),
        json!({"kty": "XYZ", "x": "X"}),
        json!({"crv": "P-256", "x": "X", "y": "Y"}),
    ] {
        assert!(canonical_jwk(&bad).is_err(), "{bad} was canonicalized");
    }
}

#[test]
fn rfc9449_example_key_thumbprint_is_the_jkt_of_figure_9() {
    assert_eq!(jwk_thumbprint(&rfc9449_jwk()).unwrap(), RFC9449_JKT);
}

#[test]
fn rfc8037_ed25519_key_thumbprint_matches_appendix_a3() {
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X});
    assert_eq!(jwk_thumbprint(&jwk).unwrap(), RFC8037_THUMBPRINT);
}

// ---- RFC 9449 examples --------------------------------------------------------------------

#[test]
fn ath_of_the_rfc9449_example_access_token_matches_figure_14() {
    assert_eq!(ath(RFC9449_ACCESS_TOKEN), RFC9449_ATH);
}

#[test]
fn rfc9449_figure_2_and_13_proofs_decode_and_verify_with_their_jwk() {
    let token_request = verify_self_signed(RFC9449_FIGURE_2).unwrap();
    assert_eq!(
        token_request.header,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": rfc9449_jwk()})
    );
    // Figure 4.
    assert_eq!(
        token_request.claims,
        json!({"jti": "-BwC3ESc6acc2lTc", "htm": "POST", "htu": "https://server.example.com/token", "iat": 1562262616})
    );

    let resource_request = verify_self_signed(RFC9449_FIGURE_13).unwrap();
    // Figure 14.
    assert_eq!(
        resource_request.claims,
        json!({
            "jti": "e1j3V_bKic8-LAEB",
            "htm": "GET",
            "htu": "https://resource.example.org/protectedresource",
            "iat": 1562262618,
            "ath": RFC9449_ATH,
        })
    );
    assert_eq!(
        resource_request.claims["ath"].as_str().unwrap(),
        ath(RFC9449_ACCESS_TOKEN)
    );
}

#[test]
fn verifier_refuses_the_rfc9449_example_proof_with_a_changed_signature_or_payload() {
    let parts: Vec<&str> = RFC9449_FIGURE_13.split('.').collect();
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], tampered(parts[2]));
    assert!(verify_self_signed(&bad_signature).is_err());
    let bad_payload = format!("{}.{}.{}", parts[0], tampered(parts[1]), parts[2]);
    assert!(verify_self_signed(&bad_payload).is_err());
}

// ---- RFC 8037, RFC 7515, RFC 4231: the signing primitives ------------------------------

#[test]
fn rfc8037_appendix_a4_ed25519_jws_is_reproduced_exactly() {
    let seed: [u8; 32] = b64u_decode(RFC8037_D).unwrap().try_into().unwrap();
    let key = DpopKey::from_ed25519_seed(&seed);
    assert_eq!(
        key.public_jwk(),
        json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
    );
    assert_eq!(key.thumbprint(), RFC8037_THUMBPRINT);
    assert_eq!(key.alg_name(), "EdDSA");
    assert_eq!(
        key.jws_compact(r#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing"),
        RFC8037_JWS
    );
}

#[test]
fn rfc7515_appendix_a3_es256_key_and_raw_r_s_signature() {
    let key = DpopKey::from_p256_secret(&b64u_decode(RFC7515_A3_D).unwrap());
    let jwk = key.public_jwk();
    assert_eq!(
        jwk,
        json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": RFC7515_A3_Y})
    );
    assert_eq!(key.alg_name(), "ES256");
    // The published signature is R || S (64 bytes), and it verifies with the key.
    let parts: Vec<&str> = RFC7515_A3_JWS.split('.').collect();
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let signature = b64u_decode(parts[2]).unwrap();
    assert_eq!(signature.len(), 64);
    verify_with_jwk("ES256", &jwk, signing_input.as_bytes(), &signature).unwrap();
    // And what the key signs has the same form and verifies the same way.
    let ours = key.sign(signing_input.as_bytes());
    assert_eq!(ours.len(), 64);
    verify_with_jwk("ES256", &jwk, signing_input.as_bytes(), &ours).unwrap();
}

#[test]
fn hmac_sha256_matches_rfc4231_test_cases_2_3_and_6() {
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&hmac_sha256(&[0xaa; 20], &[0xdd; 50])),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
    );
    // A key longer than the block is hashed first.
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

// ---- What every proof must be (RFC 9449 §4.2) --------------------------------------------

#[test]
fn generated_keys_have_public_only_jwks_of_their_type() {
    for key in keys() {
        let jwk = key.public_jwk();
        let members: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        match key.alg() {
            Alg::Es256 => {
                assert_eq!(jwk["kty"], "EC");
                assert_eq!(jwk["crv"], "P-256");
                let mut sorted = members.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, ["crv", "kty", "x", "y"]);
                // RFC 7518 §6.2.1.2-3: full-size 32-byte coordinates.
                assert_eq!(b64u_decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
                assert_eq!(b64u_decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);
            }
            Alg::EdDsa => {
                assert_eq!(jwk["kty"], "OKP");
                assert_eq!(jwk["crv"], "Ed25519");
                let mut sorted = members.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, ["crv", "kty", "x"]);
                assert_eq!(b64u_decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
            }
        }
        assert_eq!(key.thumbprint(), jwk_thumbprint(&jwk).unwrap());
        assert_eq!(key.thumbprint().len(), 43);
    }
    assert_ne!(
        DpopKey::generate(Alg::Es256).thumbprint(),
        DpopKey::generate(Alg::Es256).thumbprint()
    );
}

#[test]
fn a_default_proof_has_the_header_and_claims_rfc9449_section_4_2_requires_and_verifies() {
    for key in keys() {
        let proof = key.proof(&ProofSpec::new("GET", URL).iat(T));
        let decoded = verify_self_signed(&proof).unwrap();
        assert_eq!(
            decoded.header,
            json!({"typ": "dpop+jwt", "alg": key.alg_name(), "jwk": key.public_jwk()})
        );
        assert!(decoded.header["jwk"].get("d").is_none());
        assert_eq!(
            jwk_thumbprint(&decoded.header["jwk"]).unwrap(),
            key.thumbprint()
        );
        let claims = decoded.claims.as_object().unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["htm", "htu", "iat", "jti"]);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], URL);
        assert_eq!(claims["iat"], json!(T));
        assert!(claims["jti"].is_string());
        // The compact form: three base64url segments, no padding.
        assert_eq!(proof.split('.').count(), 3);
        assert!(
            proof
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        );
    }
}

#[test]
fn es256_proof_signatures_are_64_byte_r_s_not_der() {
    let key = DpopKey::generate(Alg::Es256);
    let decoded = decode(&key.proof(&ProofSpec::new("GET", URL))).unwrap();
    assert_eq!(decoded.signature.len(), 64);
    assert!(p256::ecdsa::Signature::from_slice(&decoded.signature).is_ok());
}

#[test]
fn a_proof_with_an_access_token_and_a_nonce_carries_ath_and_nonce() {
    for key in keys() {
        let spec = ProofSpec::new("POST", URL)
            .access_token(RFC9449_ACCESS_TOKEN)
            .nonce("eyJ7S_zG.eyJH0-Z.HX4w-7v");
        let claims = verify_self_signed(&key.proof(&spec)).unwrap().claims;
        assert_eq!(claims["ath"], RFC9449_ATH);
        assert_eq!(claims["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
    }
}

#[test]
fn the_default_iat_is_now() {
    let before = common::dpop_client::now_secs();
    let claims = decode(&DpopKey::generate(Alg::EdDsa).proof(&ProofSpec::new("GET", URL)))
        .unwrap()
        .claims;
    let after = common::dpop_client::now_secs();
    let iat = claims["iat"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&iat),
        "{before} <= {iat} <= {after}"
    );
}

#[test]
fn proof_for_strips_query_and_fragment_and_uses_the_given_clock() {
    let key = DpopKey::generate(Alg::Es256);
    let proof = key.proof_for(
        "GET",
        "https://api.example.test/api/me?x=1#top",
        Some("tok"),
        Some("n-1"),
        T - 30,
    );
    let claims = verify_self_signed(&proof).unwrap().claims;
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "https://api.example.test/api/me");
    assert_eq!(claims["iat"], json!(T - 30));
    assert_eq!(claims["ath"], ath("tok"));
    assert_eq!(claims["nonce"], "n-1");

    let bare = decode(&key.proof_for("POST", URL, None, None, T))
        .unwrap()
        .claims;
    assert!(bare.get("ath").is_none());
    assert!(bare.get("nonce").is_none());
}

#[test]
fn htu_of_strips_query_and_fragment_only() {
    for (url, htu) in [
        ("https://a.test/p", "https://a.test/p"),
        ("https://a.test/p?q=1", "https://a.test/p"),
        ("https://a.test/p#frag", "https://a.test/p"),
        ("https://a.test/p?q=1#frag", "https://a.test/p"),
        ("https://a.test/p#frag?not-a-query", "https://a.test/p"),
        ("https://a.test/p?", "https://a.test/p"),
        (
            "http://127.0.0.1:4321/api/login",
            "http://127.0.0.1:4321/api/login",
        ),
        // No normalization: case, port and trailing slash stay as given.
        ("HTTPS://A.test:443/P/", "HTTPS://A.test:443/P/"),
    ] {
        assert_eq!(htu_of(url), htu, "htu_of({url:?})");
    }
}

#[test]
fn every_proof_has_a_fresh_jti_of_at_least_96_random_bits() {
    let key = DpopKey::generate(Alg::EdDsa);
    let mut seen = HashSet::new();
    for _ in 0..500 {
        let claims = decode(&key.proof(&ProofSpec::new("GET", URL).iat(T)))
            .unwrap()
            .claims;
        let jti = claims["jti"].as_str().unwrap().to_owned();
        assert!(b64u_decode(&jti).unwrap().len() * 8 >= 96, "{jti}");
        assert!(seen.insert(jti), "a jti came twice");
    }
}

#[test]
fn two_proofs_for_the_same_request_differ_in_jti() {
    let key = DpopKey::generate(Alg::Es256);
    let a = decode(&key.proof_for("GET", URL, None, None, T)).unwrap();
    let b = decode(&key.proof_for("GET", URL, None, None, T)).unwrap();
    assert_ne!(a.claims["jti"], b.claims["jti"]);
}

// ---- Attack knobs ------------------------------------------------------------------------

#[test]
fn knob_jti_override_makes_two_proofs_share_a_jti() {
    let key = DpopKey::generate(Alg::Es256);
    let spec = ProofSpec::new("GET", URL).jti("same-jti-0123456789");
    let a = verify_self_signed(&key.proof(&spec)).unwrap();
    let b = verify_self_signed(&key.proof(&spec)).unwrap();
    assert_eq!(a.claims["jti"], "same-jti-0123456789");
    assert_eq!(a.claims["jti"], b.claims["jti"]);
}

#[test]
fn knob_iat_override_makes_stale_and_future_proofs() {
    let key = DpopKey::generate(Alg::EdDsa);
    for iat in [T - 3600, T + 3600, 0] {
        let claims = verify_self_signed(&key.proof(&ProofSpec::new("GET", URL).iat(iat)))
            .unwrap()
            .claims;
        assert_eq!(claims["iat"], json!(iat));
    }
}

#[test]
fn knob_typ_override_changes_only_typ() {
    for key in keys() {
        let decoded =
            verify_self_signed(&key.proof(&ProofSpec::new("GET", URL).typ("JWT"))).unwrap();
        assert_eq!(decoded.header["typ"], "JWT");
        assert_eq!(decoded.header["alg"], key.alg_name());
        let without =
            decode(&key.proof(&ProofSpec::new("GET", URL).without_header_param("typ"))).unwrap();
        assert!(without.header.get("typ").is_none());
    }
}

#[test]
fn knob_alg_none_sends_alg_none_and_an_empty_signature() {
    let key = DpopKey::generate(Alg::Es256);
    let proof = key.proof(&ProofSpec::new("GET", URL).alg_none());
    assert!(proof.ends_with('.'));
    let decoded = decode(&proof).unwrap();
    assert_eq!(decoded.header["alg"], "none");
    assert!(decoded.signature.is_empty());
    assert!(verify_self_signed(&proof).is_err());
}

#[test]
fn knob_alg_override_keeps_the_real_signature_under_another_alg_name() {
    let key = DpopKey::generate(Alg::EdDsa);
    // RFC 9864's fully-specified name for Ed25519, as the `dpop` npm package sends it.
    let proof = key.proof(&ProofSpec::new("GET", URL).alg("Ed25519"));
    let decoded = verify_self_signed(&proof).unwrap();
    assert_eq!(decoded.header["alg"], "Ed25519");
    // A name that does not match the key: the signature is still the key's.
    let proof = key.proof(&ProofSpec::new("GET", URL).alg("ES256"));
    let decoded = decode(&proof).unwrap();
    assert_eq!(decoded.header["alg"], "ES256");
    assert!(verify_self_signed(&proof).is_err());
    verify_with_jwk(
        "EdDSA",
        &key.public_jwk(),
        decoded.signing_input.as_bytes(),
        &decoded.signature,
    )
    .unwrap();
}

#[test]
fn knob_hmac_signs_hs256_with_the_given_secret() {
    let key = DpopKey::generate(Alg::Es256);
    // The alg-confusion attack: the public key as the HMAC secret.
    let secret = key.public_key_bytes();
    assert_eq!(secret.len(), 65);
    let proof = key.proof(&ProofSpec::new("GET", URL).hmac(&secret));
    let decoded = decode(&proof).unwrap();
    assert_eq!(decoded.header["alg"], "HS256");
    assert_eq!(decoded.header["jwk"], key.public_jwk());
    assert_eq!(
        decoded.signature,
        hmac_sha256(&secret, decoded.signing_input.as_bytes())
    );
    assert!(verify_self_signed(&proof).is_err());
}

#[test]
fn knob_private_jwk_puts_d_of_the_signing_key_in_the_header() {
    for key in keys() {
        let proof = key.proof(&ProofSpec::new("GET", URL).private_jwk());
        // Still verifies with the public members: only `d` is extra.
        let decoded = verify_self_signed(&proof).unwrap();
        let d = b64u_decode(decoded.header["jwk"]["d"].as_str().unwrap()).unwrap();
        assert_eq!(d.len(), 32);
        // `d` is really this key's private key: the key made from it is the same key.
        let again = match key.alg() {
            Alg::Es256 => DpopKey::from_p256_secret(&d),
            Alg::EdDsa => DpopKey::from_ed25519_seed(&d.try_into().unwrap()),
        };
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert_eq!(decoded.header["jwk"], key.private_jwk());
    }
}

#[test]
fn knob_without_jwk_omits_the_jwk_header() {
    for key in keys() {
        let decoded = decode(&key.proof(&ProofSpec::new("GET", URL).without_jwk())).unwrap();
        assert!(decoded.header.get("jwk").is_none());
        assert_eq!(decoded.header["typ"], "dpop+jwt");
        // The signature is still the key's own.
        verify_with_jwk(
            key.alg_name(),
            &key.public_jwk(),
            decoded.signing_input.as_bytes(),
            &decoded.signature,
        )
        .unwrap();
    }
}

#[test]
fn knob_jwk_of_another_key_puts_its_jwk_in_the_header_while_this_key_signs() {
    for (signer, other) in [
        (DpopKey::generate(Alg::Es256), DpopKey::generate(Alg::Es256)),
        (DpopKey::generate(Alg::EdDsa), DpopKey::generate(Alg::EdDsa)),
    ] {
        let proof = signer.proof(&ProofSpec::new("GET", URL).jwk_of(&other));
        let decoded = decode(&proof).unwrap();
        assert_eq!(decoded.header["jwk"], other.public_jwk());
        assert!(verify_self_signed(&proof).is_err());
        verify_with_jwk(
            signer.alg_name(),
            &signer.public_jwk(),
            decoded.signing_input.as_bytes(),
            &decoded.signature,
        )
        .unwrap();
    }
    let arbitrary = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"});
    let proof = DpopKey::generate(Alg::Es256)
        .proof(&ProofSpec::new("GET", URL).jwk(JwkHeader::Replace(arbitrary.clone())));
    assert_eq!(decode(&proof).unwrap().header["jwk"], arbitrary);
}

#[test]
fn knob_empty_and_garbage_signatures_do_not_verify() {
    for key in keys() {
        let empty = key.proof(&ProofSpec::new("GET", URL).signature(Sig::Empty));
        assert!(empty.ends_with('.'));
        assert!(decode(&empty).unwrap().signature.is_empty());
        assert!(verify_self_signed(&empty).is_err());

        let garbage = key.proof(&ProofSpec::new("GET", URL).signature(Sig::Garbage));
        assert_eq!(decode(&garbage).unwrap().signature.len(), 64);
        assert!(verify_self_signed(&garbage).is_err());

        let literal = key.proof(&ProofSpec::new("GET", URL).signature(Sig::Literal("%%%".into())));
        assert!(literal.ends_with(".%%%"));
        assert!(decode(&literal).is_err());
    }
}

#[test]
fn knob_der_signature_is_a_der_ecdsa_signature_of_the_same_input() {
    let key = DpopKey::generate(Alg::Es256);
    let proof = key.proof(&ProofSpec::new("GET", URL).signature(Sig::Der));
    let decoded = decode(&proof).unwrap();
    assert_eq!(decoded.signature[0], 0x30, "a DER SEQUENCE");
    assert!((8..=72).contains(&decoded.signature.len()));
    assert!(verify_self_signed(&proof).is_err());
    let der = p256::ecdsa::Signature::from_der(&decoded.signature).unwrap();
    verify_with_jwk(
        "ES256",
        &key.public_jwk(),
        decoded.signing_input.as_bytes(),
        &der.to_bytes(),
    )
    .unwrap();
}

#[test]
fn knob_extra_claims_are_added_or_replace_standard_ones() {
    let key = DpopKey::generate(Alg::Es256);
    let spec = ProofSpec::new("GET", URL)
        .claim("exp", json!(T + 60))
        .claim("htm", json!("get"))
        .claim("iat", json!("1764000000"));
    let claims = verify_self_signed(&key.proof(&spec)).unwrap().claims;
    assert_eq!(claims["exp"], json!(T + 60));
    assert_eq!(claims["htm"], "get");
    assert_eq!(claims["iat"], "1764000000");
    let header = decode(&key.proof(&ProofSpec::new("GET", URL).header_param("kid", json!("k1"))))
        .unwrap()
        .header;
    assert_eq!(header["kid"], "k1");
}

#[test]
fn knob_without_claim_omits_exactly_that_claim() {
    let key = DpopKey::generate(Alg::EdDsa);
    for name in ["jti", "htm", "htu", "iat", "ath", "nonce"] {
        let spec = ProofSpec::new("GET", URL)
            .access_token("tok")
            .nonce("n")
            .without_claim(name);
        let claims = verify_self_signed(&key.proof(&spec)).unwrap().claims;
        let claims = claims.as_object().unwrap();
        assert!(!claims.contains_key(name), "{name} still there");
        assert_eq!(claims.len(), 5, "{name}: {claims:?}");
    }
}

#[test]
fn knob_access_token_gives_ath_of_that_token_only() {
    let key = DpopKey::generate(Alg::Es256);
    let claims = decode(&key.proof(&ProofSpec::new("GET", URL).access_token("one")))
        .unwrap()
        .claims;
    assert_eq!(claims["ath"], ath("one"));
    assert_ne!(claims["ath"], ath("two"));
    assert_eq!(
        ath("one"),
        b64u(Sha256::digest(b"one")),
        "base64url of SHA-256 of the ASCII token"
    );
}

// ---- WWW-Authenticate and DPoP-Nonce (RFC 9449 §7.1, §8, §9) ----------------------------

#[test]
fn challenge_parser_reads_invalid_dpop_proof_with_algs() {
    let c = challenge_of(
        r#"DPoP error="invalid_dpop_proof", error_description="the proof's jti was seen before", algs="ES256 EdDSA""#,
    )
    .unwrap();
    assert_eq!(c.scheme, "DPoP");
    assert_eq!(c.error.as_deref(), Some("invalid_dpop_proof"));
    assert_eq!(
        c.error_description.as_deref(),
        Some("the proof's jti was seen before")
    );
    assert_eq!(c.algs, ["ES256", "EdDSA"]);
}

#[test]
fn challenge_parser_reads_rfc9449_figure_24_use_dpop_nonce() {
    let c = challenge_of(
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
    )
    .unwrap();
    assert_eq!(c.error.as_deref(), Some("use_dpop_nonce"));
    assert_eq!(
        c.error_description.as_deref(),
        Some("Resource server requires nonce in DPoP proof")
    );
    assert!(c.algs.is_empty());
}

#[test]
fn challenge_parser_reads_rfc9449_figures_15_and_16() {
    let c = challenge_of(r#"DPoP algs="ES256 PS256""#).unwrap();
    assert_eq!(c.error, None);
    assert_eq!(c.algs, ["ES256", "PS256"]);

    // Figure 16, its RFC 8792 line wrapping undone.
    let c = challenge_of(
        r#"DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256""#,
    )
    .unwrap();
    assert_eq!(c.error.as_deref(), Some("invalid_token"));
    assert_eq!(
        c.error_description.as_deref(),
        Some("Invalid DPoP key binding")
    );
    assert_eq!(c.algs, ["ES256"]);
}

#[test]
fn challenge_parser_finds_the_dpop_challenge_among_several_rfc9449_figures_17_to_19() {
    // Figure 17.
    let all = challenges(r#"Bearer, DPoP algs="ES256 PS256""#);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].scheme, "Bearer");
    assert!(all[0].params.is_empty());
    assert_eq!(all[1].algs, ["ES256", "PS256"]);

    // Figure 18: the error belongs to the Bearer challenge, not to DPoP's.
    let value = r#"Bearer error="invalid_token", error_description="Invalid token", DPoP algs="ES256 PS256""#;
    let all = challenges(value);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].error.as_deref(), Some("invalid_token"));
    let dpop = challenge_of(value).unwrap();
    assert_eq!(dpop.error, None);
    assert_eq!(dpop.algs, ["ES256", "PS256"]);

    // Figure 19.
    let dpop = challenge_of(
        r#"Bearer error="invalid_request", error_description="Multiple methods used to include access token", DPoP algs="ES256 PS256", error="invalid_request", error_description="Multiple methods used to include access token""#,
    )
    .unwrap();
    assert_eq!(dpop.error.as_deref(), Some("invalid_request"));
    assert_eq!(
        dpop.error_description.as_deref(),
        Some("Multiple methods used to include access token")
    );

    assert_eq!(challenge_of(r#"Bearer error="invalid_token""#), None);
}

#[test]
fn challenge_parser_handles_case_escapes_tokens_whitespace_and_token68() {
    let c = challenge_of(
        "dpop   ERROR = use_dpop_nonce ,Error_Description=\"say \\\"hi\\\", then \\\\ go\" ,  realm=\"api\", unknown=x",
    )
    .unwrap();
    assert_eq!(c.scheme, "dpop");
    assert_eq!(c.error.as_deref(), Some("use_dpop_nonce"));
    assert_eq!(
        c.error_description.as_deref(),
        Some(r#"say "hi", then \ go"#)
    );
    assert_eq!(c.param("REALM"), Some("api"));
    assert_eq!(c.param("unknown"), Some("x"));

    let all = challenges("Basic YWxhZGRpbjpvcGVuc2VzYW1l==, DPoP algs=\"EdDSA\"");
    assert_eq!(
        all[0].token68.as_deref(),
        Some("YWxhZGRpbjpvcGVuc2VzYW1l==")
    );
    assert_eq!(all[1].algs, ["EdDSA"]);

    assert_eq!(challenge_of("DPoP").unwrap().params, []);
    assert_eq!(challenge_of(""), None);
    assert_eq!(challenge_of("DPoPx error=\"use_dpop_nonce\""), None);
}

fn response_headers(www_authenticate: &[&str], nonces: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in www_authenticate {
        headers.append(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_str(value).unwrap(),
        );
    }
    for nonce in nonces {
        headers.append("DPoP-Nonce", HeaderValue::from_str(nonce).unwrap());
    }
    headers
}

const USE_NONCE: &str = r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#;
const NONCE: &str = "eyJ7S_zG.eyJH0-Z.HX4w-7v";

#[test]
fn wants_nonce_on_rfc9449_figure_24_resource_server_401() {
    let headers = response_headers(&[USE_NONCE], &[NONCE]);
    assert_eq!(wants_nonce(401, &headers).as_deref(), Some(NONCE));
    // Among several challenges and several WWW-Authenticate fields too.
    let headers = response_headers(&[r#"Bearer realm="api""#, USE_NONCE], &[NONCE]);
    assert_eq!(wants_nonce(401, &headers).as_deref(), Some(NONCE));
}

#[test]
fn wants_nonce_on_a_400_with_the_challenge_or_rfc9449_figure_20_body() {
    let headers = response_headers(&[USE_NONCE], &[NONCE]);
    assert_eq!(wants_nonce(400, &headers).as_deref(), Some(NONCE));

    // Figure 20: the authorization server's error is in the JSON body, no challenge.
    let headers = response_headers(&[], &[NONCE]);
    let body = br#"{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"}"#;
    assert_eq!(wants_nonce(400, &headers), None);
    assert_eq!(
        wants_nonce_with_body(400, &headers, body).as_deref(),
        Some(NONCE)
    );
    assert_eq!(wants_nonce_with_body(401, &headers, body), None);
    assert_eq!(
        wants_nonce_with_body(400, &headers, br#"{"error": "invalid_dpop_proof"}"#),
        None
    );
    assert_eq!(wants_nonce_with_body(400, &headers, b"not json"), None);
}

#[test]
fn wants_no_nonce_without_the_error_the_header_or_the_status() {
    // Another error.
    let headers = response_headers(&[r#"DPoP error="invalid_dpop_proof""#], &[NONCE]);
    assert_eq!(wants_nonce(401, &headers), None);
    // use_dpop_nonce in a Bearer challenge is not DPoP's.
    let headers = response_headers(&[r#"Bearer error="use_dpop_nonce""#], &[NONCE]);
    assert_eq!(wants_nonce(401, &headers), None);
    // No DPoP-Nonce header.
    let headers = response_headers(&[USE_NONCE], &[]);
    assert_eq!(wants_nonce(401, &headers), None);
    // Not a 400 or 401.
    let headers = response_headers(&[USE_NONCE], &[NONCE]);
    for status in [200, 403, 500] {
        assert_eq!(wants_nonce(status, &headers), None, "{status}");
    }
}

#[test]
fn dpop_nonce_header_must_be_single_and_nqchar() {
    // RFC 9449 §8.2 Figure 23: a new nonce on a 200.
    let headers = response_headers(&[], &["eyJ7S_zG.eyJbYu3.xQmBj-1"]);
    assert_eq!(
        nonce_of(&headers).as_deref(),
        Some("eyJ7S_zG.eyJbYu3.xQmBj-1")
    );
    assert_eq!(nonce_of(&HeaderMap::new()), None);
    // §8: "there MUST NOT be more than one DPoP-Nonce header".
    let two = response_headers(&[USE_NONCE], &["a", "b"]);
    assert_eq!(nonce_of(&two), None);
    assert_eq!(wants_nonce(401, &two), None);
    // §8.1: 1*NQCHAR, so no space, no double quote, no backslash, not empty.
    for bad in ["a b", "a\"b", "a\\b", ""] {
        assert_eq!(nonce_of(&response_headers(&[], &[bad])), None, "{bad:?}");
    }
}
