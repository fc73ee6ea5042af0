//! The action lists the AWS categories are computed from. The privilege-escalation methods,
//! credential-returning actions and data-exfiltration actions follow the published research
//! cloudsplaining and pathfinding.cloud document (so findings are comparable with theirs), written
//! here in AWS's canonical spelling.

/// (method, actions that must all be allowed without a resource constraint).
pub const ESCALATION_METHODS: &[(&str, &[&str])] = &[
    ("CreateAccessKey", &["iam:CreateAccessKey"]),
    ("CreateLoginProfile", &["iam:CreateLoginProfile"]),
    ("UpdateLoginProfile", &["iam:UpdateLoginProfile"]),
    ("AddUserToGroup", &["iam:AddUserToGroup"]),
    ("CreateNewPolicyVersion", &["iam:CreatePolicyVersion"]),
    (
        "SetExistingDefaultPolicyVersion",
        &["iam:SetDefaultPolicyVersion"],
    ),
    ("AttachUserPolicy", &["iam:AttachUserPolicy"]),
    ("AttachGroupPolicy", &["iam:AttachGroupPolicy"]),
    ("AttachRolePolicy", &["iam:AttachRolePolicy"]),
    ("PutUserPolicy", &["iam:PutUserPolicy"]),
    ("PutGroupPolicy", &["iam:PutGroupPolicy"]),
    ("PutRolePolicy", &["iam:PutRolePolicy"]),
    (
        "UpdateRolePolicyToAssumeIt",
        &["iam:UpdateAssumeRolePolicy"],
    ),
    (
        "CreateEC2WithExistingIP",
        &["iam:PassRole", "ec2:RunInstances"],
    ),
    (
        "PassExistingRoleToNewLambdaThenInvoke",
        &[
            "iam:PassRole",
            "lambda:CreateFunction",
            "lambda:InvokeFunction",
        ],
    ),
    (
        "PassExistingRoleToNewLambdaThenTriggerWithNewDynamo",
        &[
            "iam:PassRole",
            "lambda:CreateFunction",
            "lambda:CreateEventSourceMapping",
            "dynamodb:CreateTable",
            "dynamodb:PutItem",
        ],
    ),
    (
        "PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo",
        &[
            "iam:PassRole",
            "lambda:CreateFunction",
            "lambda:CreateEventSourceMapping",
        ],
    ),
    (
        "PassExistingRoleToNewGlueDevEndpoint",
        &["iam:PassRole", "glue:CreateDevEndpoint"],
    ),
    (
        "PassExistingRoleToCloudFormation",
        &["iam:PassRole", "cloudformation:CreateStack"],
    ),
    (
        "PassExistingRoleToNewDataPipeline",
        &["iam:PassRole", "datapipeline:CreatePipeline"],
    ),
    ("UpdateExistingGlueDevEndpoint", &["glue:UpdateDevEndpoint"]),
    (
        "EditExistingLambdaFunctionWithRole",
        &["lambda:UpdateFunctionCode"],
    ),
    (
        "AccessExistingBedrockCodeInterpreterSession",
        &[
            "bedrock-agentcore:StartCodeInterpreterSession",
            "bedrock-agentcore:InvokeCodeInterpreter",
        ],
    ),
    (
        "ExecuteCloudFormationChangeSet",
        &[
            "cloudformation:CreateChangeSet",
            "cloudformation:ExecuteChangeSet",
        ],
    ),
    (
        "ModifyEC2InstanceUserDataThenRestart",
        &[
            "ec2:ModifyInstanceAttribute",
            "ec2:StopInstances",
            "ec2:StartInstances",
        ],
    ),
    (
        "ModifyExistingEC2LaunchTemplate",
        &[
            "ec2:CreateLaunchTemplateVersion",
            "ec2:ModifyLaunchTemplate",
        ],
    ),
    (
        "EC2InstanceConnectSendSSHPublicKey",
        &[
            "ec2-instance-connect:SendSSHPublicKey",
            "ec2:DescribeInstances",
        ],
    ),
    (
        "ECSExecuteCommandOnRunningTask",
        &["ecs:ExecuteCommand", "ecs:DescribeTasks"],
    ),
    (
        "UpdateAndInvokeLambdaFunction",
        &["lambda:UpdateFunctionCode", "lambda:InvokeFunction"],
    ),
    (
        "UpdateLambdaFunctionAndAddPermission",
        &["lambda:UpdateFunctionCode", "lambda:AddPermission"],
    ),
    (
        "CreatePresignedSageMakerNotebookUrl",
        &["sagemaker:CreatePresignedNotebookInstanceUrl"],
    ),
    (
        "UpdateSageMakerNotebookLifecycleConfig",
        &[
            "sagemaker:CreateNotebookInstanceLifecycleConfig",
            "sagemaker:StopNotebookInstance",
            "sagemaker:UpdateNotebookInstance",
            "sagemaker:StartNotebookInstance",
        ],
    ),
    (
        "PassExistingRoleToNewAppRunnerService",
        &["iam:PassRole", "apprunner:CreateService"],
    ),
    (
        "PassExistingRoleToNewBedrockCodeInterpreter",
        &[
            "iam:PassRole",
            "bedrock-agentcore:CreateCodeInterpreter",
            "bedrock-agentcore:StartCodeInterpreterSession",
            "bedrock-agentcore:InvokeCodeInterpreter",
        ],
    ),
    (
        "PassExistingRoleToNewCloudFormationStackSet",
        &[
            "iam:PassRole",
            "cloudformation:CreateStackSet",
            "cloudformation:CreateStackInstances",
        ],
    ),
    (
        "PassRoleToUpdateCloudFormationStackSet",
        &["iam:PassRole", "cloudformation:UpdateStackSet"],
    ),
    (
        "PassExistingRoleToNewCodeBuildProjectThenBuild",
        &[
            "iam:PassRole",
            "codebuild:CreateProject",
            "codebuild:StartBuild",
        ],
    ),
    (
        "PassExistingRoleToNewCodeBuildProjectThenBuildBatch",
        &[
            "iam:PassRole",
            "codebuild:CreateProject",
            "codebuild:StartBuildBatch",
        ],
    ),
    (
        "PassExistingRoleToNewEC2SpotInstance",
        &["iam:PassRole", "ec2:RequestSpotInstances"],
    ),
    (
        "PassExistingRoleToNewECSClusterServiceTask",
        &[
            "iam:PassRole",
            "ecs:CreateCluster",
            "ecs:RegisterTaskDefinition",
            "ecs:CreateService",
        ],
    ),
    (
        "PassExistingRoleToNewECSClusterRunTask",
        &[
            "iam:PassRole",
            "ecs:CreateCluster",
            "ecs:RegisterTaskDefinition",
            "ecs:RunTask",
        ],
    ),
    (
        "PassExistingRoleToNewECSService",
        &[
            "iam:PassRole",
            "ecs:RegisterTaskDefinition",
            "ecs:CreateService",
        ],
    ),
    (
        "PassExistingRoleToNewECSTaskViaRunTask",
        &["iam:PassRole", "ecs:RegisterTaskDefinition", "ecs:RunTask"],
    ),
    (
        "PassExistingRoleToNewECSTaskViaStartTask",
        &[
            "iam:PassRole",
            "ecs:RegisterTaskDefinition",
            "ecs:StartTask",
        ],
    ),
    (
        "PassExistingRoleToNewGlueJobThenRun",
        &["iam:PassRole", "glue:CreateJob", "glue:StartJobRun"],
    ),
    (
        "PassExistingRoleToNewGlueJobViaTrigger",
        &["iam:PassRole", "glue:CreateJob", "glue:CreateTrigger"],
    ),
    (
        "PassExistingRoleToUpdatedGlueJobThenRun",
        &["iam:PassRole", "glue:UpdateJob", "glue:StartJobRun"],
    ),
    (
        "PassExistingRoleToUpdatedGlueJobViaTrigger",
        &["iam:PassRole", "glue:UpdateJob", "glue:CreateTrigger"],
    ),
    (
        "PassExistingRoleToNewLambdaThenAddPermission",
        &[
            "iam:PassRole",
            "lambda:CreateFunction",
            "lambda:AddPermission",
        ],
    ),
    (
        "PassExistingRoleToNewSageMakerNotebookInstance",
        &["iam:PassRole", "sagemaker:CreateNotebookInstance"],
    ),
    (
        "PassExistingRoleToNewSageMakerTrainingJob",
        &["iam:PassRole", "sagemaker:CreateTrainingJob"],
    ),
    (
        "PassExistingRoleToNewSageMakerProcessingJob",
        &["iam:PassRole", "sagemaker:CreateProcessingJob"],
    ),
    (
        "CreateAndRotateAccessKey",
        &["iam:CreateAccessKey", "iam:DeleteAccessKey"],
    ),
    (
        "AttachUserPolicyThenCreateAccessKey",
        &["iam:AttachUserPolicy", "iam:CreateAccessKey"],
    ),
    (
        "CreatePolicyVersionThenAssumeRole",
        &["iam:CreatePolicyVersion", "sts:AssumeRole"],
    ),
    (
        "PutUserPolicyThenCreateAccessKey",
        &["iam:PutUserPolicy", "iam:CreateAccessKey"],
    ),
    (
        "AttachRolePolicyThenUpdateAssumeRolePolicy",
        &["iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy"],
    ),
    (
        "CreatePolicyVersionThenUpdateAssumeRolePolicy",
        &["iam:CreatePolicyVersion", "iam:UpdateAssumeRolePolicy"],
    ),
    (
        "PutRolePolicyThenUpdateAssumeRolePolicy",
        &["iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy"],
    ),
];

/// Actions that return credentials (keys, tokens, passwords). Four entries are not in AWS's
/// catalog (misspellings kept from the source list, and retired names): only a policy naming them
/// literally matches them.
pub const CREDENTIAL_ACTIONS: &[&str] = &[
    "airflow:CreateCliToken",
    "airflow:CreateWebLoginToken",
    "appsync:CreateApiKey",
    "chime:CreateApiKey",
    "cloud9:CreateEnvironmentToken",
    "codeartifact:GetAuthorizationToken",
    "codepipeline:PollForJobs",
    "cognito-identity:GetOpenIdToken",
    "cognito-identity:GetOpenIdTokenForDeveloperIdentity",
    "cognito-identity:GetCredentialsForIdentity",
    "cognito-idp:GetSigningCertificate",
    "connect:GetFederationToken",
    "connect:getfederationtokens",
    "ec2:GetPasswordData",
    "ecr:GetAuthorizationToken",
    "ecr-public:GetAuthorizationToken",
    "emr-containers:GetManagedEndpointSessionCredentials",
    "finspace-api:GetProgrammaticAccessCredentials",
    "gamelift:RequestUploadCredentials",
    "gamelift:GetInstanceAccess",
    "gamelist:getcomputeaccess",
    "gamelist:getcomputeauthtoken",
    "grafana:CreateWorkspaceApiKey",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:CreateServiceSpecificCredential",
    "iam:ResetServiceSpecificCredential",
    "iam:UpdateAccessKey",
    "license-manager:GetAccessToken",
    "lightsail:GetInstanceAccessDetails",
    "lightsail:DownloadDefaultKeyPair",
    "lightsail:CreateBucketAccessKey",
    "lightsail:GetRelationalDatabaseMasterUserPassword",
    "mediapackage:RotateChannelCredentials",
    "mediapackage:RotateIngestEndpointCredentials",
    "rds-db:connect",
    "redshift:GetClusterCredentials",
    "redshift:GetClusterCredentialsWithIAM",
    "redshift-serverless:GetCredentials",
    "sso:getrolecredentials",
    "sts:AssumeRole",
    "sts:AssumeRoleWithSAML",
    "sts:AssumeRoleWithWebIdentity",
    "sts:GetFederationToken",
    "sts:GetSessionToken",
];

/// Read actions that hand out data wholesale.
pub const EXFILTRATION_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "secretsmanager:GetSecretValue",
];

/// Read-level actions reported with infrastructure modification anyway (they copy data out).
pub const MODIFY_ALSO: &[&str] = &[
    "s3:GetObject",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "secretsmanager:GetSecretValue",
    "rds:CopyDBSnapshot",
    "rds:CreateDBSnapshot",
];
