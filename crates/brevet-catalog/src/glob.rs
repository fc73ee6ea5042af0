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

    /// Azure's patterns: a `*` between slashes also stands for no segment at all — Managed
    /// Identity Operator's `userAssignedIdentities/*/assign/action` is what grants
    /// `userAssignedIdentities/assign/action`. Every way of dropping such segments, as patterns.
    pub fn azure(pattern: &str) -> Vec<Pattern> {
        let parts: Vec<&str> = pattern.split("/*/").collect();
        let gaps = parts.len() - 1;
        // Bounded: role definitions write one or two such segments; beyond 6, keep the pattern.
        if gaps == 0 || gaps > 6 {
            return vec![Pattern::new(pattern, true)];
        }
        (0u32..(1 << gaps))
            .map(|mask| {
                let mut s = parts[0].to_string();
                for (i, part) in parts[1..].iter().enumerate() {
                    s.push_str(if mask & (1 << i) != 0 { "/" } else { "/*/" });
                    s.push_str(part);
                }
                Pattern::new(&s, true)
            })
            .collect()
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
    fn azure_star_segments_may_be_empty() {
        let ps = Pattern::azure("Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action");
        let any = |n: &str| ps.iter().any(|p| p.matches(n));
        assert!(any(
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
        ));
        assert!(any(
            "microsoft.managedidentity/userassignedidentities/x/assign/action"
        ));
        assert!(!any(
            "Microsoft.ManagedIdentity/userAssignedIdentities/read"
        ));
        assert_eq!(Pattern::azure("a/*/b/*/c").len(), 4);
    }

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
