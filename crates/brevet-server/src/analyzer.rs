//! The identity analyzer at the server's edge: `[analyzer]` names IAM exports on disk (AWS
//! authorization details, GCP policies and roles, Azure assignments and definitions); the
//! portal's admin pages show their analysis. A report is computed on first view and again
//! whenever a file changes (its size or modification time), on the blocking pool, once however
//! many views wait for it.
//!
//! Admins can also upload exports in the portal (`/analyzer`, "Analyse exports"): the files are
//! analysed in memory and dropped; only the report is kept, the latest per cloud, until the
//! next upload, a "Remove" or a restart. Each upload is audited (`analyzer_upload`: who, the
//! file names, sizes and SHA-256 digests — never the contents).
//!
//! ```toml
//! [analyzer]
//! aws = ["exports/prod-account.json"]
//! gcp = ["projects/acme-prod=exports/acme-prod.policy.json", "exports/roles.json"]
//! azure = ["exports/assignments.json", "exports/definitions.json"]
//! exclusions = "exports/exclusions.toml"
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use brevet_analyzer::{Exclusions, Input, Options, Report};
use brevet_audit::{AuditDraft, EventKind};
use brevet_catalog::{Catalog, Cloud};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{field, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalyzer {
    #[serde(default)]
    aws: Vec<String>,
    #[serde(default)]
    gcp: Vec<String>,
    #[serde(default)]
    azure: Vec<String>,
    exclusions: Option<String>,
    /// Largest upload the portal accepts, in MiB (all files of one upload together).
    max_upload_mib: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct AnalyzerSettings {
    aws: Vec<PathBuf>,
    /// (resource a bare policy is of, file)
    gcp: Vec<(Option<String>, PathBuf)>,
    azure: Vec<PathBuf>,
    exclusions: Option<PathBuf>,
    max_upload: usize,
}

/// `[analyzer] max_upload_mib` when not set.
pub const DEFAULT_MAX_UPLOAD_MIB: u64 = 64;

impl AnalyzerSettings {
    pub fn parse(raw: &RawAnalyzer, base: &Path) -> Result<Self, ConfigError> {
        let file = |at: String, p: &str| -> Result<PathBuf, ConfigError> {
            let path = base.join(p);
            if !path.is_file() {
                return Err(field(
                    at,
                    format!(
                        "`{}` is not a readable file (paths are relative to the config file)",
                        path.display()
                    ),
                ));
            }
            Ok(path)
        };
        let list = |name: &str, v: &[String]| -> Result<Vec<PathBuf>, ConfigError> {
            v.iter()
                .enumerate()
                .map(|(i, p)| file(format!("analyzer.{name}[{i}]"), p))
                .collect()
        };
        let mut gcp = Vec::new();
        for (i, g) in raw.gcp.iter().enumerate() {
            let at = format!("analyzer.gcp[{i}]");
            match g.split_once('=') {
                Some((r, p))
                    if ["projects/", "folders/", "organizations/", "buckets/"]
                        .iter()
                        .any(|k| r.starts_with(k)) =>
                {
                    gcp.push((Some(r.to_string()), file(at, p)?))
                }
                _ => gcp.push((None, file(at, g)?)),
            }
        }
        let exclusions = match &raw.exclusions {
            Some(p) => {
                let path = file("analyzer.exclusions".into(), p)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| field("analyzer.exclusions", e.to_string()))?;
                Exclusions::parse(&path.display().to_string(), &text)
                    .map_err(|e| field("analyzer.exclusions", e.to_string()))?;
                Some(path)
            }
            None => None,
        };
        let mib = raw.max_upload_mib.unwrap_or(DEFAULT_MAX_UPLOAD_MIB);
        if !(1..=4096).contains(&mib) {
            return Err(field(
                "analyzer.max_upload_mib",
                format!("{mib} is out of range: give 1 to 4096 (MiB)"),
            ));
        }
        Ok(AnalyzerSettings {
            aws: list("aws", &raw.aws)?,
            gcp,
            azure: list("azure", &raw.azure)?,
            exclusions,
            max_upload: (mib * 1024 * 1024) as usize,
        })
    }

    /// Largest upload, in bytes.
    pub fn max_upload(&self) -> usize {
        self.max_upload
    }

    pub fn is_empty(&self) -> bool {
        self.aws.is_empty() && self.gcp.is_empty() && self.azure.is_empty()
    }

    fn files(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.aws.iter().map(PathBuf::as_path).collect();
        v.extend(self.gcp.iter().map(|(_, p)| p.as_path()));
        v.extend(self.azure.iter().map(PathBuf::as_path));
        v.extend(self.exclusions.as_deref());
        v
    }
}

impl Default for AnalyzerSettings {
    fn default() -> Self {
        AnalyzerSettings {
            aws: Vec::new(),
            gcp: Vec::new(),
            azure: Vec::new(),
            exclusions: None,
            max_upload: (DEFAULT_MAX_UPLOAD_MIB * 1024 * 1024) as usize,
        }
    }
}

/// Where an analysis came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The exports `[analyzer]` names.
    Configured,
    /// Exports an admin uploaded in the portal.
    Uploaded { by: String, at: DateTime<Utc> },
}

impl Source {
    /// `configured` or `upload`, as the portal's links name it.
    pub fn key(&self) -> &'static str {
        match self {
            Source::Configured => "configured",
            Source::Uploaded { .. } => "upload",
        }
    }
}

/// One cloud's analysis, or why it could not be made.
pub struct CloudAnalysis {
    pub cloud: Cloud,
    pub files: Vec<String>,
    pub report: Result<Report, String>,
    pub source: Source,
}

/// A file of an upload: its name as the browser gave it, and its bytes.
pub struct UploadedFile {
    pub name: String,
    /// As the request body gave it (no copy).
    pub bytes: axum::body::Bytes,
}

/// Exports an admin uploaded to be analysed.
pub struct Upload {
    pub cloud: Cloud,
    /// Authorization details (AWS), IAM policies and custom roles (GCP), assignments,
    /// definitions and identities (Azure).
    pub exports: Vec<UploadedFile>,
    /// CloudTrail exports (AWS only): permissions unused in their window are proposed removed.
    pub cloudtrail: Vec<UploadedFile>,
    /// An exclusions file; without one, the configured exclusions (if any) apply.
    pub exclusions: Option<UploadedFile>,
    /// GCP: the resource a bare policy file is of — `RESOURCE` for every such file, or
    /// `RESOURCE=FILENAME` per file.
    pub gcp_resources: Vec<(String, Option<String>)>,
}

/// Why an upload was not analysed (nothing was kept or changed).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("another upload is being analysed; try again in a moment")]
    Busy,
    #[error("{0}")]
    Bad(String),
}

impl Upload {
    /// Parses the GCP resources field: whitespace- or comma-separated `RESOURCE` or
    /// `RESOURCE=FILENAME` entries.
    pub fn parse_gcp_resources(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
        let mut out = Vec::new();
        let mut bare = 0;
        for entry in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|e| !e.is_empty())
        {
            let (res, file) = match entry.split_once('=') {
                Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
                Some(_) => {
                    return Err(format!(
                        "`{entry}`: name the file after `=`, or leave out the `=`"
                    ))
                }
                None => {
                    bare += 1;
                    (entry, None)
                }
            };
            if !["projects/", "folders/", "organizations/", "buckets/"]
                .iter()
                .any(|k| res.starts_with(k) && res.len() > k.len())
            {
                return Err(format!(
                    "`{res}` is not a GCP resource name: write projects/ID, folders/NUMBER, organizations/NUMBER or buckets/NAME"
                ));
            }
            out.push((res.to_string(), file));
        }
        if bare > 1 {
            return Err("more than one resource without a file name: write RESOURCE=FILENAME for each bare policy file".into());
        }
        Ok(out)
    }

    /// The audit record of this upload: names, sizes and digests, never contents.
    fn audit_data(&self) -> serde_json::Value {
        let describe = |f: &UploadedFile| {
            serde_json::json!({
                "name": f.name,
                "bytes": f.bytes.len(),
                "sha256": hex::encode(Sha256::digest(&f.bytes)),
            })
        };
        serde_json::json!({
            "cloud": self.cloud.as_str(),
            "exports": self.exports.iter().map(describe).collect::<Vec<_>>(),
            "cloudtrail": self.cloudtrail.iter().map(describe).collect::<Vec<_>>(),
            "exclusions": self.exclusions.as_ref().map(describe),
        })
    }
}

type Stamp = Vec<Option<(SystemTime, u64)>>;
/// The configured exports' analyses, one per cloud.
type Analyses = Arc<Vec<Arc<CloudAnalysis>>>;

pub struct Analyzer {
    settings: AnalyzerSettings,
    /// The last analysis and the files' stamp it was made from. An async mutex, held while a
    /// new analysis runs, so concurrent views after a change wait for one analysis instead of
    /// each starting their own.
    cache: tokio::sync::Mutex<Option<(Stamp, Analyses)>>,
    /// The latest upload's analysis per cloud.
    uploads: Mutex<Vec<Arc<CloudAnalysis>>>,
    /// One upload analysed at a time (each holds its files in memory).
    uploading: tokio::sync::Semaphore,
}

impl Analyzer {
    pub fn new(settings: AnalyzerSettings) -> Analyzer {
        Analyzer {
            settings,
            cache: tokio::sync::Mutex::new(None),
            uploads: Mutex::new(Vec::new()),
            uploading: tokio::sync::Semaphore::new(1),
        }
    }

    pub fn configured(&self) -> bool {
        !self.settings.is_empty()
    }

    pub fn settings(&self) -> &AnalyzerSettings {
        &self.settings
    }

    /// The right to read and analyse one upload, taken before its body is read: uploads wait
    /// for nobody and hold at most one body in memory.
    pub fn begin_upload(&self) -> Result<tokio::sync::SemaphorePermit<'_>, UploadError> {
        self.uploading.try_acquire().map_err(|_| UploadError::Busy)
    }

    fn uploads(&self) -> Vec<Arc<CloudAnalysis>> {
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every analysis there is: uploads first, then the configured exports'.
    pub async fn all(self: &Arc<Self>) -> Vec<Arc<CloudAnalysis>> {
        let mut out = self.uploads();
        if self.configured() {
            out.extend(self.current().await.iter().cloned());
        }
        out
    }

    /// Analyses uploaded exports off the runtime and keeps the report as this cloud's upload,
    /// replacing the previous one. Bad input is an error and changes nothing. The report is
    /// kept only once the upload is audited (fail closed). `_permit` is [`Self::begin_upload`]'s.
    pub async fn upload(
        self: &Arc<Self>,
        _permit: tokio::sync::SemaphorePermit<'_>,
        store: &brevet_store::Store,
        by: &str,
        upload: Upload,
    ) -> Result<Arc<CloudAnalysis>, UploadError> {
        if upload.exports.is_empty() {
            return Err(UploadError::Bad(
                "choose at least one export file to analyse".into(),
            ));
        }
        if upload.cloud != Cloud::Aws && !upload.cloudtrail.is_empty() {
            return Err(UploadError::Bad(
                "CloudTrail files go with AWS exports; choose AWS or leave the activity file out"
                    .into(),
            ));
        }
        if upload.cloud != Cloud::Gcp && !upload.gcp_resources.is_empty() {
            return Err(UploadError::Bad(
                "resource names are for bare GCP policy files; choose GCP or leave them out".into(),
            ));
        }
        let audit = upload.audit_data();
        let me = self.clone();
        let by_ = by.to_string();
        let analysis = tokio::task::spawn_blocking(move || me.analyze_upload(upload, by_))
            .await
            .map_err(|e| UploadError::Bad(format!("the analysis failed: {e}")))??;
        // Audited before it is shown; if the audit log cannot be written, the report is
        // dropped (fail closed). Bad input stopped above, before anything was written.
        let mut data = audit;
        if let Ok(r) = &analysis.report {
            data["findings"] = r.findings.len().into();
            data["principals"] = r.principals.len().into();
        }
        store
            .append_audit(vec![AuditDraft::new(
                EventKind::AnalyzerUpload,
                by,
                None,
                data,
            )])
            .await
            .map_err(|e| {
                UploadError::Bad(format!(
                    "the upload could not be audited, so its report is not kept: {e}"
                ))
            })?;
        let analysis = Arc::new(analysis);
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads.retain(|a| a.cloud != analysis.cloud);
        uploads.push(analysis.clone());
        uploads.sort_by_key(|a| a.cloud.as_str());
        Ok(analysis)
    }

    /// Drops the uploaded analysis of `cloud`; whether there was one.
    pub fn remove_upload(&self, cloud: Cloud) -> bool {
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let before = uploads.len();
        uploads.retain(|a| a.cloud != cloud);
        uploads.len() != before
    }

    fn analyze_upload(&self, upload: Upload, by: String) -> Result<CloudAnalysis, UploadError> {
        let catalog = Catalog::embedded().map_err(|e| UploadError::Bad(e.to_string()))?;
        let exclusions = match &upload.exclusions {
            Some(f) => {
                let text = std::str::from_utf8(&f.bytes).map_err(|_| {
                    UploadError::Bad(format!("{}: an exclusions file is UTF-8 TOML", f.name))
                })?;
                Exclusions::parse(&f.name, text).map_err(|e| UploadError::Bad(e.to_string()))?
            }
            None => self.configured_exclusions().map_err(UploadError::Bad)?,
        };
        let opts = Options {
            exclusions,
            ..Options::default()
        };
        let files: Vec<String> = upload.exports.iter().map(|f| f.name.clone()).collect();
        fn input(f: &UploadedFile) -> Input<'_> {
            Input::from_bytes(f.name.clone(), &f.bytes[..])
        }
        let report = match upload.cloud {
            Cloud::Aws => brevet_analyzer::aws::analyze(
                &catalog,
                brevet_analyzer::aws::AwsInputs {
                    exports: upload.exports.iter().map(input).collect(),
                    last_accessed: Vec::new(),
                    cloudtrail: upload.cloudtrail.iter().map(input).collect(),
                    unused_days: 90,
                },
                &opts,
            ),
            Cloud::Gcp => {
                let for_all = upload
                    .gcp_resources
                    .iter()
                    .find(|(_, f)| f.is_none())
                    .map(|(r, _)| r.clone());
                for (_, f) in &upload.gcp_resources {
                    if let Some(f) = f {
                        if !upload.exports.iter().any(|e| &e.name == f) {
                            return Err(UploadError::Bad(format!(
                                "a resource is named for `{f}`, which is not among the uploaded files"
                            )));
                        }
                    }
                }
                let inputs = upload
                    .exports
                    .iter()
                    .map(|f| brevet_analyzer::gcp::GcpInput {
                        resource: upload
                            .gcp_resources
                            .iter()
                            .find(|(_, n)| n.as_deref() == Some(f.name.as_str()))
                            .map(|(r, _)| r.clone())
                            .or_else(|| for_all.clone()),
                        input: input(f),
                    })
                    .collect();
                brevet_analyzer::gcp::analyze(&catalog, inputs, &opts)
            }
            Cloud::Azure => brevet_analyzer::azure::analyze(
                &catalog,
                upload.exports.iter().map(input).collect(),
                &opts,
            ),
            other => {
                return Err(UploadError::Bad(format!(
                    "the analyzer reads AWS, GCP and Azure exports, not {}",
                    other.as_str()
                )))
            }
        }
        .map_err(|e| UploadError::Bad(e.to_string()))?;
        Ok(CloudAnalysis {
            cloud: upload.cloud,
            files,
            report: Ok(report),
            source: Source::Uploaded { by, at: Utc::now() },
        })
    }

    fn configured_exclusions(&self) -> Result<Exclusions, String> {
        match &self.settings.exclusions {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    Exclusions::parse(&p.display().to_string(), &t).map_err(|e| e.to_string())
                }),
            None => Ok(Exclusions::default()),
        }
    }

    fn stamp(&self) -> Stamp {
        self.settings
            .files()
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    /// The analysis of the configured exports as they are now (the first view after a change
    /// waits for it; the work runs on the blocking pool, not the async runtime).
    async fn current(self: &Arc<Self>) -> Analyses {
        let mut cache = self.cache.lock().await;
        let stamp = self.stamp();
        if let Some((s, a)) = cache.as_ref() {
            if *s == stamp {
                return a.clone();
            }
        }
        let me = self.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            Arc::new(me.analyze().into_iter().map(Arc::new).collect::<Vec<_>>())
        })
        .await
        .unwrap_or_else(|e| {
            Arc::new(vec![Arc::new(CloudAnalysis {
                cloud: Cloud::Aws,
                files: vec![],
                report: Err(format!("the analysis failed: {e}")),
                source: Source::Configured,
            })])
        });
        *cache = Some((stamp, fresh.clone()));
        fresh
    }

    fn analyze(&self) -> Vec<CloudAnalysis> {
        let s = &self.settings;
        let catalog = match Catalog::embedded() {
            Ok(c) => c,
            Err(e) => {
                return vec![CloudAnalysis {
                    cloud: Cloud::Aws,
                    files: vec![],
                    report: Err(e.to_string()),
                    source: Source::Configured,
                }]
            }
        };
        let opts = match self.configured_exclusions() {
            Ok(exclusions) => Options {
                exclusions,
                ..Options::default()
            },
            Err(e) => {
                return vec![CloudAnalysis {
                    cloud: Cloud::Aws,
                    files: vec![],
                    report: Err(e),
                    source: Source::Configured,
                }]
            }
        };
        let open = |p: &Path| -> Result<Input<'static>, String> {
            std::fs::File::open(p)
                .map(|f| Input::new(p.display().to_string(), f))
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        let names = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        if !s.aws.is_empty() {
            let report = s
                .aws
                .iter()
                .map(|p| open(p))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|exports| {
                    brevet_analyzer::aws::analyze(
                        &catalog,
                        brevet_analyzer::aws::AwsInputs {
                            exports,
                            ..Default::default()
                        },
                        &opts,
                    )
                    .map_err(|e| e.to_string())
                });
            out.push(CloudAnalysis {
                cloud: Cloud::Aws,
                files: names(&s.aws),
                report,
                source: Source::Configured,
            });
        }
        if !s.gcp.is_empty() {
            let report = s
                .gcp
                .iter()
                .map(|(r, p)| {
                    open(p).map(|input| brevet_analyzer::gcp::GcpInput {
                        resource: r.clone(),
                        input,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|inputs| {
                    brevet_analyzer::gcp::analyze(&catalog, inputs, &opts)
                        .map_err(|e| e.to_string())
                });
            out.push(CloudAnalysis {
                cloud: Cloud::Gcp,
                files: s.gcp.iter().map(|(_, p)| p.display().to_string()).collect(),
                report,
                source: Source::Configured,
            });
        }
        if !s.azure.is_empty() {
            let report = s
                .azure
                .iter()
                .map(|p| open(p))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|inputs| {
                    brevet_analyzer::azure::analyze(&catalog, inputs, &opts)
                        .map_err(|e| e.to_string())
                });
            out.push(CloudAnalysis {
                cloud: Cloud::Azure,
                files: names(&s.azure),
                report,
                source: Source::Configured,
            });
        }
        out
    }
}
