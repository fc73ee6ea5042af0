//! OpenSSH key revocation lists: `krl::revoked_serials` on arbitrary bytes (what read-back
//! evidence parses: Brevet's own KRL file, or one someone else wrote), and `krl::encode` →
//! `revoked_serials` round trips of fuzz-chosen serials, CA key blob and comment, which must give
//! back exactly the distinct non-zero serials, for that CA only.
#![no_main]

use brevet_providers::ssh::krl::{encode, revoked_serials};
use libfuzzer_sys::fuzz_target;

/// An ssh-ed25519 public key blob (SSH wire encoding); the seed corpus's KRLs name it.
const CA: &[u8] = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07";

/// Reads the input front to back; past its end, zeros.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }
    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn word(&mut self) -> u64 {
        let b = self.take(8);
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        u64::from_be_bytes(a)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = revoked_serials(rest, CA);
        let _ = revoked_serials(rest, b"");
        return;
    }
    // Round trip: [ca_len][ca][comment_len][comment][version u64][generated u64][serial u64]*
    let mut r = Cursor(rest);
    let ca_len = usize::from(r.byte());
    let ca = r.take(ca_len).to_vec();
    let comment_len = usize::from(r.byte());
    let comment = String::from_utf8_lossy(r.take(comment_len)).into_owned();
    let version = r.word();
    let generated = r.word();
    let mut serials = Vec::new();
    while !r.0.is_empty() {
        serials.push(r.word());
    }
    let krl = encode(&ca, &serials, version, generated, &comment);
    let mut expected: Vec<u64> = serials.iter().copied().filter(|s| *s != 0).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(
        revoked_serials(&krl, &ca).expect("an encoded KRL parses"),
        expected
    );
    let mut other = ca.clone();
    other.push(0);
    assert!(
        revoked_serials(&krl, &other)
            .expect("an encoded KRL parses")
            .is_empty(),
        "serials of one CA are revoked for another"
    );
});
