//! OpenSSH key revocation lists (KRL), the binary format sshd reads through `RevokedKeys`
//! (OpenSSH's PROTOCOL.krl). No maintained Rust crate writes KRLs, so this module writes the one
//! section Brevet needs — certificate serials under one CA — and parses it back for read-back
//! evidence.

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u32).to_be_bytes());
    out.extend(bytes);
}

/// Encodes a KRL revoking `serials` of certificates signed by the CA whose public key blob (SSH
/// wire encoding) is `ca_key`. Serial 0 cannot be revoked by serial and is skipped.
pub fn encode(
    ca_key: &[u8],
    serials: &[u64],
    krl_version: u64,
    generated_at: u64,
    comment: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(MAGIC);
    out.extend(FORMAT_VERSION.to_be_bytes());
    out.extend(krl_version.to_be_bytes());
    out.extend(generated_at.to_be_bytes());
    out.extend(0u64.to_be_bytes()); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, comment.as_bytes());
    let mut serials: Vec<u64> = serials.iter().copied().filter(|s| *s != 0).collect();
    serials.sort_unstable();
    serials.dedup();
    if !serials.is_empty() {
        let mut list = Vec::with_capacity(serials.len() * 8);
        for s in &serials {
            list.extend(s.to_be_bytes());
        }
        let mut section = Vec::new();
        put_string(&mut section, ca_key);
        put_string(&mut section, b""); // reserved
        section.push(CERT_SERIAL_LIST);
        put_string(&mut section, &list);
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated KRL".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "bad u32")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| "bad u64")?,
        ))
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
}

/// The certificate serials a KRL revokes for the CA `ca_key` (other sections are skipped).
pub fn revoked_serials(krl: &[u8], ca_key: &[u8]) -> Result<Vec<u64>, String> {
    let mut r = Reader(krl);
    if r.take(8)? != MAGIC {
        return Err("not an OpenSSH KRL (bad magic)".into());
    }
    if r.u32()? != FORMAT_VERSION {
        return Err("unsupported KRL format version".into());
    }
    r.u64()?;
    r.u64()?;
    r.u64()?;
    r.string()?;
    r.string()?;
    let mut serials = Vec::new();
    while !r.0.is_empty() {
        let kind = r.byte()?;
        let data = r.string()?;
        if kind != SECTION_CERTIFICATES {
            continue;
        }
        let mut s = Reader(data);
        let ca = s.string()?;
        s.string()?;
        while !s.0.is_empty() {
            let sub = s.byte()?;
            let body = s.string()?;
            if ca == ca_key && sub == CERT_SERIAL_LIST {
                let mut b = Reader(body);
                while !b.0.is_empty() {
                    serials.push(b.u64()?);
                }
            }
        }
    }
    Ok(serials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_empty_without_serials() {
        let ca = b"\x00\x00\x00\x0bssh-ed25519fake";
        let krl = encode(ca, &[7, 3, 7, 0], 1, 2, "brevet");
        assert_eq!(&krl[..8], MAGIC);
        assert_eq!(revoked_serials(&krl, ca).unwrap(), vec![3, 7]);
        assert!(revoked_serials(&krl, b"other ca").unwrap().is_empty());
        let empty = encode(ca, &[], 1, 2, "");
        assert!(revoked_serials(&empty, ca).unwrap().is_empty());
        assert!(revoked_serials(&krl[..krl.len() - 3], ca).is_err());
        assert!(revoked_serials(b"garbage!", ca).is_err());
    }
}
