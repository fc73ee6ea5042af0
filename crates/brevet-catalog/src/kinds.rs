//! Resource kinds: what "object storage" or "a secret" is called in each cloud. A neutral profile
//! names a kind; the compilers take the kind's native resource types (AWS), permission
//! collections (GCP) and resource types (Azure) from here, split by plane.
//!
//! A kind lists, per cloud, the native types whose permissions configure the resource (control
//! plane) and those whose permissions reach what it holds (data plane), plus the few permissions
//! the cloud files under a control type although they read or write data (`s3:ListBucket`,
//! `secretsmanager:GetSecretValue`).

use crate::model::Cloud;

#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub description: &'static str,
    pub aws: Option<Native>,
    pub gcp: Option<Native>,
    pub azure: Option<Native>,
    pub okta: Option<Native>,
}

/// One cloud's words for a kind.
#[derive(Debug)]
pub struct Native {
    /// AWS: the service prefix (`s3`); GCP and Azure: unused (their types carry the service).
    pub service: &'static str,
    /// AWS resource types (`bucket`), GCP collections (`storage.buckets`), Azure resource types
    /// (`Microsoft.Storage/storageAccounts/blobServices/containers`).
    pub control: &'static [&'static str],
    pub data: &'static [&'static str],
    /// Permissions on a control type that belong to the data plane.
    pub data_extra: &'static [&'static str],
}

impl Kind {
    pub fn native(&self, cloud: Cloud) -> Option<&Native> {
        match cloud {
            Cloud::Aws => self.aws.as_ref(),
            Cloud::Gcp => self.gcp.as_ref(),
            Cloud::Azure => self.azure.as_ref(),
            Cloud::Okta => self.okta.as_ref(),
        }
    }
}

/// Every kind Brevet knows, by name.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

pub static KINDS: &[Kind] = &[
    Kind {
        name: "object-storage",
        description: "a bucket or blob container and the objects in it",
        aws: Some(Native {
            service: "s3",
            control: &["bucket"],
            data: &["object"],
            data_extra: &[
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:ListBucketMultipartUploads",
                "s3:GetBucketLocation",
            ],
        }),
        gcp: Some(Native {
            service: "storage",
            control: &["storage.buckets"],
            data: &["storage.objects", "storage.multipartUploads"],
            data_extra: &[],
        }),
        azure: Some(Native {
            service: "Microsoft.Storage",
            control: &["Microsoft.Storage/storageAccounts/blobServices/containers"],
            data: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs"],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "database",
        description: "a managed relational database instance or cluster",
        aws: Some(Native {
            service: "rds",
            control: &["db", "cluster", "snapshot", "cluster-snapshot", "pg"],
            data: &[],
            data_extra: &[],
        }),
        gcp: Some(Native {
            service: "cloudsql",
            control: &[
                "cloudsql.instances",
                "cloudsql.databases",
                "cloudsql.backupRuns",
                "cloudsql.users",
            ],
            data: &[],
            data_extra: &[
                "cloudsql.instances.connect",
                "cloudsql.instances.login",
                "cloudsql.instances.executeSql",
            ],
        }),
        azure: Some(Native {
            service: "Microsoft.Sql",
            control: &["Microsoft.Sql/servers/databases", "Microsoft.Sql/servers"],
            data: &[],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "compute-instance",
        description: "a virtual machine",
        aws: Some(Native {
            service: "ec2",
            control: &["instance"],
            data: &[],
            data_extra: &[],
        }),
        gcp: Some(Native {
            service: "compute",
            control: &["compute.instances"],
            data: &[],
            data_extra: &[],
        }),
        azure: Some(Native {
            service: "Microsoft.Compute",
            control: &["Microsoft.Compute/virtualMachines"],
            data: &["Microsoft.Compute/virtualMachines"],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "secret",
        description: "a stored secret and its versions",
        aws: Some(Native {
            service: "secretsmanager",
            control: &["secret"],
            data: &[],
            data_extra: &[
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:BatchGetSecretValue",
            ],
        }),
        gcp: Some(Native {
            service: "secretmanager",
            control: &["secretmanager.secrets"],
            data: &["secretmanager.versions"],
            data_extra: &[],
        }),
        azure: Some(Native {
            service: "Microsoft.KeyVault",
            control: &["Microsoft.KeyVault/vaults/secrets"],
            data: &["Microsoft.KeyVault/vaults/secrets"],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "key",
        description: "an encryption or signing key",
        aws: Some(Native {
            service: "kms",
            control: &["key"],
            data: &[],
            data_extra: &[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:Sign",
                "kms:Verify",
            ],
        }),
        gcp: Some(Native {
            service: "cloudkms",
            control: &["cloudkms.cryptoKeys"],
            data: &["cloudkms.cryptoKeyVersions"],
            data_extra: &[],
        }),
        azure: Some(Native {
            service: "Microsoft.KeyVault",
            control: &["Microsoft.KeyVault/vaults/keys"],
            data: &["Microsoft.KeyVault/vaults/keys"],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "queue",
        description: "a message queue or topic",
        aws: Some(Native {
            service: "sqs",
            control: &["queue"],
            data: &[],
            data_extra: &[
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ],
        }),
        gcp: Some(Native {
            service: "pubsub",
            control: &["pubsub.topics", "pubsub.subscriptions"],
            data: &[],
            data_extra: &["pubsub.topics.publish", "pubsub.subscriptions.consume"],
        }),
        azure: Some(Native {
            service: "Microsoft.ServiceBus",
            control: &["Microsoft.ServiceBus/namespaces/queues"],
            data: &["Microsoft.ServiceBus/namespaces/messages"],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "log",
        description: "a log group, log bucket or workspace and its entries",
        aws: Some(Native {
            service: "logs",
            control: &["log-group"],
            data: &["log-stream"],
            data_extra: &[
                "logs:FilterLogEvents",
                "logs:GetLogEvents",
                "logs:StartQuery",
                "logs:GetLogRecord",
            ],
        }),
        gcp: Some(Native {
            service: "logging",
            control: &[
                "logging.logs",
                "logging.views",
                "logging.sinks",
                "logging.buckets",
            ],
            data: &["logging.logEntries"],
            data_extra: &["logging.views.access"],
        }),
        azure: Some(Native {
            service: "Microsoft.OperationalInsights",
            control: &["Microsoft.OperationalInsights/workspaces"],
            data: &[],
            data_extra: &[
                "Microsoft.OperationalInsights/workspaces/query/read",
                "Microsoft.OperationalInsights/workspaces/search/action",
            ],
        }),
        okta: None,
    },
    Kind {
        name: "kubernetes-namespace",
        description: "workloads in one Kubernetes namespace of a managed cluster",
        aws: Some(Native {
            service: "eks",
            control: &["cluster"],
            data: &[],
            data_extra: &["eks:AccessKubernetesApi"],
        }),
        gcp: Some(Native {
            service: "container",
            control: &["container.clusters"],
            data: &[
                "container.deployments",
                "container.replicaSets",
                "container.pods",
                "container.services",
                "container.configMaps",
            ],
            data_extra: &[],
        }),
        azure: Some(Native {
            service: "Microsoft.ContainerService",
            control: &["Microsoft.ContainerService/managedClusters"],
            data: &[
                "Microsoft.ContainerService/managedClusters/apps/deployments",
                "Microsoft.ContainerService/managedClusters/apps/replicasets",
                "Microsoft.ContainerService/managedClusters/pods",
                "Microsoft.ContainerService/managedClusters/services",
                "Microsoft.ContainerService/managedClusters/configmaps",
            ],
            data_extra: &[],
        }),
        okta: None,
    },
    Kind {
        name: "directory-user",
        description:
            "people in an identity provider's directory (Okta users), by the groups they are in",
        aws: None,
        gcp: None,
        azure: None,
        okta: Some(Native {
            service: "okta",
            control: &[
                "okta.users",
                "okta.users.lifecycle",
                "okta.users.credentials",
                "okta.users.userprofile",
            ],
            data: &[],
            data_extra: &[],
        }),
    },
];
