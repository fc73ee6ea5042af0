//! The wildcards the clouds write in permission names: `*` (any run, also across `:`, `.` and
//! `/`) and, for AWS, `?` (one character). AWS and Azure compare names case-insensitively; GCP
//! permissions are case-sensitive. (Small enough that a glob crate's path semantics — `*` not
//! crossing `/` — would be the wrong tool.)

#[derive(Debug, Clone)]
pub struct Pattern {
    bytes: Vec<u8>,
    case_insensitive: bool,
}

impl Pattern {
    pub fn new(pattern: &str, case_insensitive: bool) -> Self {
        Self {
            bytes: pattern.as_bytes().to_vec(),
            case_insensitive,
        }
    }

    pub fn is_wildcard(pattern: &str) -> bool {
        pattern.contains(['*', '?'])
    }

    pub fn matches(&self, name: &str) -> bool {
        let (p, n) = (&self.bytes, name.as_bytes());
        let eq = |a: u8, b: u8| {
            if self.case_insensitive {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        };
        // Iterative matching with one backtrack point: linear in practice for these patterns.
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], n[ni]))) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn wildcards_match_as_the_clouds_do() {
        let m = |p: &str, n: &str| Pattern::new(p, true).matches(n);
        assert!(m("s3:Get*", "s3:GetObject"));
        assert!(m("s3:get*", "S3:GETOBJECT"));
        assert!(m("*", "ec2:RunInstances"));
        assert!(m("s3:*Object", "s3:PutObject"));
        assert!(!m("s3:*Object", "s3:PutObjectAcl"));
        assert!(m("s3:Get?bject", "s3:GetObject"));
        assert!(m(
            "Microsoft.Storage/*/read",
            "microsoft.storage/storageAccounts/read"
        ));
        assert!(m("*/read", "Microsoft.Compute/virtualMachines/read"));
        assert!(!m("*/read", "Microsoft.Compute/virtualMachines/write"));
        assert!(!m("s3:Get*", "s3:ListBucket"));
        assert!(!Pattern::new("storage.objects.Get", false).matches("storage.objects.get"));
    }
}
