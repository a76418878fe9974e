//! Which curve a `CKA_EC_PARAMS` names, in any of the forms modules give it.
//!
//! PKCS#11 defines `CKA_EC_PARAMS` as the DER of X9.62 `EcParameters`:
//!
//! ```text
//! EcParameters ::= CHOICE { ecParameters ECParameters, namedCurve OBJECT IDENTIFIER, implicitlyCA NULL }
//! ECParameters ::= SEQUENCE { version INTEGER (1), fieldID SEQUENCE { prime-field OID, p INTEGER },
//!                             curve SEQUENCE { a OCTET STRING, b OCTET STRING, seed BIT STRING OPTIONAL },
//!                             base OCTET STRING, order INTEGER, cofactor INTEGER OPTIONAL }
//! ```
//!
//! Most modules give the named curve's OID. Some give the curve by value — Yubico's `ykcs11`
//! builds P-256 keys' parameters with OpenSSL 3 as explicit `ECParameters` — and PKCS#11
//! 2.40-era modules name Edwards curves with a PrintableString (`edwards25519`). A curve given by
//! value is recognised only when every parameter (p, a, b, G, n, h) equals the named curve's:
//! anything else is refused, with a short description of what was found.

use crate::backend::Algorithm;

/// DER of the named-curve OIDs Dfns takes, as `CKA_EC_PARAMS` holds them.
pub(crate) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const SECP256K1_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// Ed25519 as an OID (1.3.101.112), and as the PrintableString "edwards25519" that PKCS#11
/// 2.40-era modules (SoftHSM 2.6, OpenSC) use.
pub(crate) const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
pub(crate) const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// A short-Weierstrass curve's domain parameters, big-endian, without leading zeros.
struct Domain {
    algorithm: Algorithm,
    p: &'static str,
    a: &'static str,
    b: &'static str,
    gx: &'static str,
    gy: &'static str,
    n: &'static str,
}

/// SEC 2 / FIPS 186-4 domain parameters (hex).
const DOMAINS: &[Domain] = &[
    Domain {
        algorithm: Algorithm::EcdsaP256,
        p: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        a: "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
        b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        gx: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        gy: "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
        n: "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    },
    Domain {
        algorithm: Algorithm::EcdsaSecp256k1,
        p: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f",
        a: "",
        b: "07",
        gx: "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        gy: "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",
        n: "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
    },
];

/// Named curves and OIDs we can name in an error, though Dfns does not take them.
const OTHER_OIDS: &[(&str, &str)] = &[
    ("1.3.132.0.34", "P-384"),
    ("1.3.132.0.35", "P-521"),
    ("1.2.840.10045.3.1.1", "P-192"),
    ("1.3.132.0.33", "P-224"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
    ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ("1.3.101.113", "Ed448"),
    ("1.3.101.110", "X25519"),
];

const PRIME_FIELD_OID: &str = "1.2.840.10045.1.1";

/// The algorithm a `CKA_EC_PARAMS` names for a key of type `CKK_EC` (`edwards == false`) or
/// `CKK_EC_EDWARDS`, or a short description of why it is refused.
pub(crate) fn ec_algorithm(edwards: bool, params: &[u8]) -> Result<Algorithm, String> {
    let found = identify(params)?;
    match (found, edwards) {
        (Algorithm::Ed25519, true) => Ok(Algorithm::Ed25519),
        (alg @ (Algorithm::EcdsaP256 | Algorithm::EcdsaSecp256k1), false) => Ok(alg),
        (alg, true) => Err(format!(
            "an Edwards key (CKK_EC_EDWARDS) whose parameters name {alg}"
        )),
        (alg, false) => Err(format!(
            "a Weierstrass key (CKK_EC) whose parameters name {alg}"
        )),
    }
}

fn refused(what: String) -> String {
    format!("{what} is not accepted for Dfns Key credentials (use P-256, secp256k1 or Ed25519)")
}

/// What the parameters name, whatever the key type.
fn identify(params: &[u8]) -> Result<Algorithm, String> {
    let (tag, value, rest) = tlv(params).ok_or_else(|| {
        refused(format!(
            "CKA_EC_PARAMS that is not DER ({} bytes)",
            params.len()
        ))
    })?;
    if !rest.is_empty() {
        return Err(refused("CKA_EC_PARAMS with trailing bytes".to_owned()));
    }
    match tag {
        0x06 => {
            let oid = spki::ObjectIdentifier::from_bytes(value)
                .map_err(|_| refused("CKA_EC_PARAMS holding a malformed OID".to_owned()))?;
            match oid.to_string().as_str() {
                "1.2.840.10045.3.1.7" => Ok(Algorithm::EcdsaP256),
                "1.3.132.0.10" => Ok(Algorithm::EcdsaSecp256k1),
                "1.3.101.112" => Ok(Algorithm::Ed25519),
                other => Err(refused(
                    match OTHER_OIDS.iter().find(|(o, _)| *o == other) {
                        Some((_, name)) => format!("curve {name} (OID {other})"),
                        None => format!("curve OID {other}"),
                    },
                )),
            }
        }
        // PrintableString: a curve name.
        0x13 => {
            let name = std::str::from_utf8(value)
                .ok()
                .filter(|n| n.len() <= 40 && n.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| refused("a curve name that is not printable".to_owned()))?;
            match name.to_ascii_lowercase().as_str() {
                "edwards25519" | "ed25519" => Ok(Algorithm::Ed25519),
                "prime256v1" | "secp256r1" | "p-256" | "nistp256" => Ok(Algorithm::EcdsaP256),
                "secp256k1" => Ok(Algorithm::EcdsaSecp256k1),
                _ => Err(refused(format!("curve \"{name}\""))),
            }
        }
        0x30 => explicit(value),
        0x05 => Err(refused(
            "implicitlyCA (the curve is not given at all)".to_owned(),
        )),
        _ => Err(refused(format!(
            "CKA_EC_PARAMS of an unexpected form (DER tag {tag:#04x})"
        ))),
    }
}

/// Recognises explicit `ECParameters` (the SEQUENCE's contents).
fn explicit(seq: &[u8]) -> Result<Algorithm, String> {
    let malformed = || refused("malformed explicit curve parameters".to_owned());
    let (version, seq) = field(seq, 0x02).ok_or_else(malformed)?;
    if strip(version) != [1] {
        return Err(malformed());
    }
    let (field_id, seq) = field(seq, 0x30).ok_or_else(malformed)?;
    let (field_type, field_id) = field(field_id, 0x06).ok_or_else(malformed)?;
    let field_type = spki::ObjectIdentifier::from_bytes(field_type).map_err(|_| malformed())?;
    if field_type.to_string() != PRIME_FIELD_OID {
        return Err(refused(
            "explicit parameters of a curve over a binary field".to_owned(),
        ));
    }
    let (p, _) = field(field_id, 0x02).ok_or_else(malformed)?;
    let (curve, seq) = field(seq, 0x30).ok_or_else(malformed)?;
    let (a, curve) = field(curve, 0x04).ok_or_else(malformed)?;
    let (b, _seed) = field(curve, 0x04).ok_or_else(malformed)?;
    let (base, seq) = field(seq, 0x04).ok_or_else(malformed)?;
    let (n, seq) = field(seq, 0x02).ok_or_else(malformed)?;
    let h = match field(seq, 0x02) {
        Some((h, _)) => strip(h).to_vec(),
        None if seq.is_empty() => vec![1],
        None => return Err(malformed()),
    };
    let p = strip(p);
    let bits = p.len() * 8 - p.first().map_or(8, |b| b.leading_zeros() as usize);
    for d in DOMAINS {
        let hex = |s: &str| hex::decode(s).expect("constant hex");
        let same = p == hex(d.p)
            && strip(a) == hex(d.a)
            && strip(b) == hex(d.b)
            && strip(n) == hex(d.n)
            && h == [1]
            && base_point_matches(base, &hex(d.gx), &hex(d.gy));
        if same {
            return Ok(d.algorithm);
        }
    }
    Err(refused(format!(
        "explicit parameters of a {bits}-bit curve, neither P-256 nor secp256k1,"
    )))
}

/// Whether an X9.62-encoded point (uncompressed `04‖x‖y`, or compressed `02/03‖x`) is (gx, gy).
fn base_point_matches(point: &[u8], gx: &[u8], gy: &[u8]) -> bool {
    let pad = |v: &[u8]| {
        let mut out = vec![0u8; 32usize.saturating_sub(v.len())];
        out.extend_from_slice(v);
        out
    };
    let (gx, gy) = (pad(gx), pad(gy));
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => rest[..32] == gx[..] && rest[32..] == gy[..],
        [tag @ (0x02 | 0x03), x @ ..] if x.len() == 32 => {
            x == &gx[..] && (*tag == 0x03) == (gy[31] & 1 == 1)
        }
        _ => false,
    }
}

/// The `subjectPublicKeyInfo` (its whole DER) of an X.509 certificate, found by walking the
/// `tbsCertificate`'s fields: `[0] version`, serial, signature algorithm, issuer, validity,
/// subject, then the key.
pub(crate) fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = field(cert, 0x30)?;
    let (mut tbs, _) = field(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for tag in [0x02, 0x30, 0x30, 0x30, 0x30] {
        tbs = field(tbs, tag)?.1;
    }
    let (_, rest) = field(tbs, 0x30)?;
    Some(&tbs[..tbs.len() - rest.len()])
}

/// The next TLV of `bytes`, which must carry `tag`: (value, what follows).
fn field(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, value, rest) = tlv(bytes)?;
    (t == tag).then_some((value, rest))
}

/// One DER TLV: (tag, value, what follows). Single-byte tags; lengths up to 4 bytes.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A big-endian integer without its leading zero bytes (DER adds one for a high first bit).
fn strip(v: &[u8]) -> &[u8] {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    &v[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Explicit `ECParameters` built here from the published constants (with a seed when
    /// `seed`, the cofactor when `cofactor`, the base point compressed when `compressed`):
    /// the test's own DER writer, not the code under test.
    fn explicit_params(d: &Domain, seed: bool, cofactor: bool, compressed: bool) -> Vec<u8> {
        fn der(tag: u8, value: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            match value.len() {
                n @ 0..=0x7f => out.push(n as u8),
                n @ 0x80..=0xff => out.extend([0x81, n as u8]),
                n => out.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            out.extend_from_slice(value);
            out
        }
        fn integer(hex_value: &str) -> Vec<u8> {
            let mut v = hex::decode(hex_value).unwrap();
            if v.is_empty() || v[0] & 0x80 != 0 {
                v.insert(0, 0);
            }
            der(0x02, &v)
        }
        // Field elements are octet strings of the field's size (a = 0 for secp256k1 included).
        let size = hex::decode(d.p).unwrap().len();
        let field_element = |hex_value: &str| {
            let v = hex::decode(hex_value).unwrap();
            let mut padded = vec![0u8; size - v.len()];
            padded.extend(v);
            der(0x04, &padded)
        };
        let prime_field = der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x01, 0x01]);
        let field_id = der(0x30, &[prime_field, integer(d.p)].concat());
        let mut curve = [field_element(d.a), field_element(d.b)].concat();
        if seed {
            curve.extend(der(0x03, &[&[0u8][..], &[0xc4; 20][..]].concat()));
        }
        let gx = hex::decode(d.gx).unwrap();
        let gy = hex::decode(d.gy).unwrap();
        let base = if compressed {
            [
                &[if gy[gy.len() - 1] & 1 == 1 {
                    0x03
                } else {
                    0x02
                }][..],
                &gx,
            ]
            .concat()
        } else {
            [&[0x04][..], &gx, &gy].concat()
        };
        let mut body = [
            integer("01"),
            field_id,
            der(0x30, &curve),
            der(0x04, &base),
            integer(d.n),
        ]
        .concat();
        if cofactor {
            body.extend(integer("01"));
        }
        der(0x30, &body)
    }

    #[test]
    fn named_curves_and_names() {
        assert_eq!(ec_algorithm(false, P256_PARAMS), Ok(Algorithm::EcdsaP256));
        assert_eq!(
            ec_algorithm(false, SECP256K1_PARAMS),
            Ok(Algorithm::EcdsaSecp256k1)
        );
        assert_eq!(
            ec_algorithm(true, ED25519_NAME_PARAMS),
            Ok(Algorithm::Ed25519)
        );
        assert_eq!(
            ec_algorithm(true, ED25519_OID_PARAMS),
            Ok(Algorithm::Ed25519)
        );
        assert_eq!(
            ec_algorithm(false, b"\x13\x0aprime256v1"),
            Ok(Algorithm::EcdsaP256)
        );
        let err = ec_algorithm(false, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]).unwrap_err();
        assert!(
            err.contains("P-384") && err.contains("1.3.132.0.34"),
            "{err}"
        );
        assert!(ec_algorithm(true, b"\x13\x0aedwards448").is_err());
        assert!(
            ec_algorithm(true, P256_PARAMS).is_err(),
            "an Edwards key naming P-256"
        );
        assert!(ec_algorithm(false, ED25519_OID_PARAMS).is_err());
        assert!(ec_algorithm(false, &[0x05, 0x00])
            .unwrap_err()
            .contains("implicitlyCA"));
    }

    #[test]
    fn explicit_p256_and_secp256k1_are_recognised_in_every_form() {
        for (d, alg) in [
            (&DOMAINS[0], Algorithm::EcdsaP256),
            (&DOMAINS[1], Algorithm::EcdsaSecp256k1),
        ] {
            for seed in [false, true] {
                for cofactor in [false, true] {
                    for compressed in [false, true] {
                        let params = explicit_params(d, seed, cofactor, compressed);
                        assert_eq!(
                            ec_algorithm(false, &params),
                            Ok(alg),
                            "seed {seed}, cofactor {cofactor}, compressed {compressed}"
                        );
                    }
                }
            }
        }
    }

    /// OpenSSL 3's explicit P-256 (`openssl ecparam -name prime256v1 -param_enc explicit`,
    /// with the seed), the form ykcs11 2.2 builds its keys' parameters in: the literal bytes, so
    /// that the test does not depend on our own writer alone.
    #[test]
    fn ykcs11_explicit_p256_bytes_are_p256() {
        let ykcs11 = hex::decode(concat!(
            "3081f7020101302c06072a8648ce3d0101022100ffffffff00000001000000000000000000000000ffffffff",
            "ffffffffffffffff305b0420ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
            "04205ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b031500c49d360886e704",
            "936a6678e1139d26b7819f7e900441046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945",
            "d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5022100ffffffff00",
            "000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551020101"
        ))
        .unwrap();
        assert_eq!(ec_algorithm(false, &ykcs11), Ok(Algorithm::EcdsaP256));
    }

    #[test]
    fn explicit_parameters_of_other_curves_are_refused_briefly() {
        // P-384 (SEC 2), built by the same writer.
        let p384 = Domain {
            algorithm: Algorithm::EcdsaP256, // unused
            p: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
            a: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc",
            b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
            gx: "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
            gy: "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
            n: "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        };
        let err = ec_algorithm(false, &explicit_params(&p384, false, true, false)).unwrap_err();
        assert!(err.contains("384-bit curve"), "{err}");
        // brainpoolP256r1: a 256-bit prime field, but not P-256's.
        let brainpool = Domain {
            algorithm: Algorithm::EcdsaP256, // unused
            p: "a9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377",
            a: "7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9",
            b: "26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6",
            gx: "8bd2aeb9cb7e57cb2c4b482ffc81b7afb9de27e1e3bd23c23a4453bd9ace3262",
            gy: "547ef835c3dac4fd97f8461a14611dc9c27745132ded8e545c1d54c72f046997",
            n: "a9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7",
        };
        let err =
            ec_algorithm(false, &explicit_params(&brainpool, false, true, false)).unwrap_err();
        assert!(
            err.contains("256-bit curve") && err.contains("neither"),
            "{err}"
        );
        // P-256 with one parameter changed (b) is not P-256.
        let mut forged = explicit_params(&DOMAINS[0], false, true, false);
        let at = forged
            .windows(4)
            .position(|w| w == [0x5a, 0xc6, 0x35, 0xd8])
            .unwrap();
        forged[at] ^= 1;
        assert!(ec_algorithm(false, &forged).is_err());
        // No hex dump in any message.
        for e in [err, ec_algorithm(false, &forged).unwrap_err()] {
            assert!(e.len() < 160, "{e}");
            assert!(!e.contains("a9fb57db"), "{e}");
        }
        assert!(
            ec_algorithm(false, b"\x30\x03\x02\x01").is_err(),
            "truncated"
        );
    }
}
