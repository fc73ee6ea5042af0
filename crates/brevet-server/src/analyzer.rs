//! The identity analyzer at the server's edge: `[analyzer]` names IAM exports on disk (AWS
//! authorization details, GCP policies and roles, Azure assignments and definitions); the
//! portal's admin pages show their analysis. A report is computed on first view and again
//! whenever a file changes (its size or modification time), on the blocking pool, once however
//! many views wait for it.
//!
//! ```toml
//! [analyzer]
//! aws = ["exports/prod-account.json"]
//! gcp = ["projects/acme-prod=exports/acme-prod.policy.json", "exports/roles.json"]
//! azure = ["exports/assignments.json", "exports/definitions.json"]
//! exclusions = "exports/exclusions.toml"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use brevet_analyzer::{Exclusions, Input, Options, Report};
use brevet_catalog::{Catalog, Cloud};
use serde::Deserialize;

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
}

#[derive(Debug, Clone, Default)]
pub struct AnalyzerSettings {
    aws: Vec<PathBuf>,
    /// (resource a bare policy is of, file)
    gcp: Vec<(Option<String>, PathBuf)>,
    azure: Vec<PathBuf>,
    exclusions: Option<PathBuf>,
}

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
        Ok(AnalyzerSettings {
            aws: list("aws", &raw.aws)?,
            gcp,
            azure: list("azure", &raw.azure)?,
            exclusions,
        })
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

/// One cloud's analysis, or why it could not be made.
pub struct CloudAnalysis {
    pub cloud: Cloud,
    pub files: Vec<String>,
    pub report: Result<Report, String>,
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

pub struct Analyzer {
    settings: AnalyzerSettings,
    /// The last analysis and the files' stamp it was made from. An async mutex, held while a
    /// new analysis runs, so concurrent views after a change wait for one analysis instead of
    /// each starting their own.
    cache: tokio::sync::Mutex<Option<(Stamp, Arc<Vec<CloudAnalysis>>)>>,
}

impl Analyzer {
    pub fn new(settings: AnalyzerSettings) -> Analyzer {
        Analyzer {
            settings,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub fn configured(&self) -> bool {
        !self.settings.is_empty()
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
    pub async fn current(self: &Arc<Self>) -> Arc<Vec<CloudAnalysis>> {
        let mut cache = self.cache.lock().await;
        let stamp = self.stamp();
        if let Some((s, a)) = cache.as_ref() {
            if *s == stamp {
                return a.clone();
            }
        }
        let me = self.clone();
        let fresh = tokio::task::spawn_blocking(move || Arc::new(me.analyze()))
            .await
            .unwrap_or_else(|e| {
                Arc::new(vec![CloudAnalysis {
                    cloud: Cloud::Aws,
                    files: vec![],
                    report: Err(format!("the analysis failed: {e}")),
                }])
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
                }]
            }
        };
        let opts = match &s.exclusions {
            Some(p) => match std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    Exclusions::parse(&p.display().to_string(), &t).map_err(|e| e.to_string())
                }) {
                Ok(exclusions) => Options {
                    exclusions,
                    ..Options::default()
                },
                Err(e) => {
                    return vec![CloudAnalysis {
                        cloud: Cloud::Aws,
                        files: vec![],
                        report: Err(e),
                    }]
                }
            },
            None => Options::default(),
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
            });
        }
        out
    }
}
