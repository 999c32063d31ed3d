//! Who makes a request, and how a resource-based policy's `Principal` / `NotPrincipal`
//! names them (`reference_policies_elements_principal`,
//! `reference_policies_elements_notprincipal`).
//!
//! The strength of a match matters, not only whether there is one: within an account, a
//! resource policy that names the caller itself (an IAM user, a role *session*) grants on its
//! own, one that names the role behind a session still passes through the session's
//! boundary and session policies, and one that names the account only delegates to the
//! account's identity policies (`reference_policies_evaluation-logic_policy-eval-denyallow`).

use std::fmt;

use super::document::Principal;
use super::eval::Truth;

/// The principal making a request, as IAM tells principals apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Not given: an IAM principal of the resource's account whose identity is unknown. Only
    /// `"*"` names it in a `Principal`, and no `NotPrincipal` spares it.
    Unnamed,
    /// The account's root user, `arn:aws:iam::111122223333:root`: identity policies do not
    /// limit it (it has full access to its account), SCPs do.
    Root { partition: String, account: String },
    /// An IAM user, `arn:aws:iam::111122223333:user/path/name`.
    User {
        partition: String,
        account: String,
        name: String,
        arn: String,
    },
    /// A role, `arn:aws:iam::111122223333:role/path/name`: a session of it whose session
    /// name is not known (the planner knows roles, not sessions).
    Role {
        partition: String,
        account: String,
        name: String,
        arn: String,
        service_linked: bool,
    },
    /// A role session, `arn:aws:sts::111122223333:assumed-role/name/session` (its ARN has
    /// the role's name but not its path).
    RoleSession {
        partition: String,
        account: String,
        role: String,
        session: String,
        arn: String,
        service_linked: bool,
    },
    /// A federated user session from `sts:GetFederationToken`,
    /// `arn:aws:sts::111122223333:federated-user/name` (the name is the one given to
    /// GetFederationToken, not the IAM user's).
    FederatedUser {
        partition: String,
        account: String,
        name: String,
        arn: String,
    },
    /// An AWS service principal, `sns.amazonaws.com`: no identity policy or SCP applies to
    /// it; only a resource-based policy naming the service lets it in.
    Service(String),
    /// A user of a web identity or SAML provider (`accounts.google.com`,
    /// `cognito-identity.amazonaws.com`, `arn:aws:iam::111122223333:saml-provider/idp`),
    /// calling `sts:AssumeRoleWithWebIdentity` or `AssumeRoleWithSAML`: named by a
    /// `Federated` principal.
    WebIdentity(String),
}

/// Why a text does not name a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a principal: {why} (write an ARN such as arn:aws:iam::111122223333:role/app or arn:aws:sts::111122223333:assumed-role/app/session, or a service such as sns.amazonaws.com)"
)]
pub struct CallerError {
    pub text: String,
    pub why: &'static str,
}

/// Service-linked roles live under this path, and nowhere else.
const SERVICE_LINKED_PATH: &str = "aws-service-role/";
/// Every service-linked role's name starts so; a session's ARN keeps the name, not the path.
const SERVICE_LINKED_NAME: &str = "AWSServiceRoleFor";

impl Caller {
    /// Reads a principal ARN (root, user, role, assumed-role, federated-user, SAML or OIDC
    /// provider) or a service or identity-provider name.
    pub fn parse(text: &str) -> Result<Caller, CallerError> {
        let error = |why| CallerError {
            text: text.to_owned(),
            why,
        };
        let Some(rest) = text.strip_prefix("arn:") else {
            if text.is_empty() || text.contains(char::is_whitespace) || !text.contains('.') {
                return Err(error("neither an ARN nor a service name"));
            }
            // Cognito identity pools sign their users in; they are Federated principals.
            if text != "cognito-identity.amazonaws.com"
                && (text.ends_with(".amazonaws.com") || text.ends_with(".amazonaws.com.cn"))
            {
                return Ok(Caller::Service(text.to_owned()));
            }
            return Ok(Caller::WebIdentity(text.to_owned()));
        };
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, _region, account, resource] = parts.as_slice() else {
            return Err(error("an ARN has six fields"));
        };
        if partition.is_empty() {
            return Err(error("the ARN names no partition"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error("the ARN names no 12-digit account"));
        }
        let (partition, account) = ((*partition).to_owned(), (*account).to_owned());
        let last = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
        match (*service, *resource) {
            ("iam", "root") => Ok(Caller::Root { partition, account }),
            ("iam", r) if r.starts_with("user/") && r.len() > 5 => Ok(Caller::User {
                partition,
                account,
                name: last(r),
                arn: text.to_owned(),
            }),
            ("iam", r) if r.starts_with("role/") && r.len() > 5 => Ok(Caller::Role {
                partition,
                account,
                name: last(r),
                arn: text.to_owned(),
                service_linked: r["role/".len()..].starts_with(SERVICE_LINKED_PATH),
            }),
            ("iam", r) if r.starts_with("saml-provider/") || r.starts_with("oidc-provider/") => {
                Ok(Caller::WebIdentity(text.to_owned()))
            }
            ("sts", r) if r.starts_with("assumed-role/") => {
                match r["assumed-role/".len()..].split_once('/') {
                    Some((role, session)) if !role.is_empty() && !session.is_empty() => {
                        Ok(Caller::RoleSession {
                            partition,
                            account,
                            role: role.to_owned(),
                            session: session.to_owned(),
                            arn: text.to_owned(),
                            service_linked: role.starts_with(SERVICE_LINKED_NAME),
                        })
                    }
                    _ => Err(error("an assumed-role ARN ends in ROLE/SESSION")),
                }
            }
            ("sts", r) if r.starts_with("federated-user/") && r.len() > 15 => {
                Ok(Caller::FederatedUser {
                    partition,
                    account,
                    name: r["federated-user/".len()..].to_owned(),
                    arn: text.to_owned(),
                })
            }
            _ => Err(error(
                "not a root, user, role, assumed-role, federated-user or identity-provider ARN",
            )),
        }
    }

    /// Reads an optional principal: none is [`Caller::Unnamed`].
    pub fn parse_optional(text: Option<&str>) -> Result<Caller, CallerError> {
        text.map_or(Ok(Caller::Unnamed), Caller::parse)
    }

    /// The account the principal belongs to, when it belongs to one.
    pub fn account(&self) -> Option<&str> {
        match self {
            Caller::Root { account, .. }
            | Caller::User { account, .. }
            | Caller::Role { account, .. }
            | Caller::RoleSession { account, .. }
            | Caller::FederatedUser { account, .. } => Some(account),
            Caller::Unnamed | Caller::Service(_) | Caller::WebIdentity(_) => None,
        }
    }

    /// Whether IAM policies of an account apply to it (identity policies, a boundary,
    /// session policies, the account's SCPs): every principal of an account. A service or
    /// an identity provider's user has none.
    pub fn is_account_principal(&self) -> bool {
        !matches!(self, Caller::Service(_) | Caller::WebIdentity(_))
    }

    /// A service-linked role or one of its sessions: SCPs and RCPs do not restrict them.
    pub fn is_service_linked(&self) -> bool {
        matches!(
            self,
            Caller::Role {
                service_linked: true,
                ..
            } | Caller::RoleSession {
                service_linked: true,
                ..
            }
        )
    }

    /// The ARN `aws:PrincipalArn` holds: a session's is its role's (IAM reports the role,
    /// not the session), without the path the session ARN does not carry.
    pub fn principal_arn(&self) -> Option<String> {
        match self {
            Caller::Root { partition, account } => {
                Some(format!("arn:{partition}:iam::{account}:root"))
            }
            Caller::User { arn, .. } | Caller::Role { arn, .. } => Some(arn.clone()),
            Caller::RoleSession {
                partition,
                account,
                role,
                ..
            } => Some(format!("arn:{partition}:iam::{account}:role/{role}")),
            Caller::FederatedUser { arn, .. } => Some(arn.clone()),
            Caller::Unnamed | Caller::Service(_) | Caller::WebIdentity(_) => None,
        }
    }

    /// The account root ARN of the caller's account, as `Principal` writes an account.
    fn account_root(&self) -> Option<String> {
        match self {
            Caller::Root { partition, account }
            | Caller::User {
                partition, account, ..
            }
            | Caller::Role {
                partition, account, ..
            }
            | Caller::RoleSession {
                partition, account, ..
            }
            | Caller::FederatedUser {
                partition, account, ..
            } => Some(format!("arn:{partition}:iam::{account}:root")),
            Caller::Unnamed | Caller::Service(_) | Caller::WebIdentity(_) => None,
        }
    }

    /// Whether an `AWS` principal value names the caller's account: its id or root ARN.
    fn account_is(&self, value: &str) -> bool {
        self.account() == Some(value) || self.account_root().as_deref() == Some(value)
    }

    /// Whether an `AWS` principal value names the role the caller is (a session of). Role
    /// names are unique in an account whatever their path, and a session's ARN has no path,
    /// so the account and the name decide.
    fn role_is(&self, value: &str) -> bool {
        let (account, name) = match self {
            Caller::Role { account, name, .. } => (account, name),
            Caller::RoleSession { account, role, .. } => (account, role),
            _ => return false,
        };
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", _, "iam", "", value_account, resource] => {
                value_account == account
                    && resource.strip_prefix("role/").is_some_and(|path| {
                        path.rsplit('/').next().is_some_and(|last| last == name)
                    })
            }
            _ => false,
        }
    }

    /// Whether an `AWS` principal value is the caller itself: the user, the session, the
    /// federated user (the root user is its account).
    fn itself_is(&self, value: &str) -> bool {
        match self {
            Caller::User { arn, .. }
            | Caller::RoleSession { arn, .. }
            | Caller::FederatedUser { arn, .. } => arn == value,
            Caller::Root { .. } => self.account_is(value),
            _ => false,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Unnamed => f.write_str("the principal"),
            Caller::Root { account, .. } => write!(f, "the root user of {account}"),
            Caller::User { arn, .. }
            | Caller::Role { arn, .. }
            | Caller::RoleSession { arn, .. }
            | Caller::FederatedUser { arn, .. } => f.write_str(arn),
            Caller::Service(name) | Caller::WebIdentity(name) => f.write_str(name),
        }
    }
}

/// How strongly a `Principal` element names the caller, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Named {
    /// Not at all.
    No,
    /// The caller's account (its id or `:root` ARN): a delegation to the account's own
    /// identity policies, not a grant to the caller.
    Account,
    /// The role behind the caller's session (or the role itself): a grant that the
    /// session's permissions boundary and session policies still limit.
    Role,
    /// The caller itself (the IAM user, the role session, the federated user, the service,
    /// the identity provider) or everyone (`"*"`): a grant that, within the account, no
    /// implicit deny of the principal's own policies limits.
    Caller,
}

/// How strongly `principal` names `caller`.
pub fn principal_names(principal: &Principal, caller: &Caller) -> Named {
    let map = match principal {
        Principal::Any(_) => return Named::Caller,
        Principal::Map(map) => map,
    };
    let mut best = Named::No;
    for (kind, values) in map {
        for value in values.iter() {
            let named = match kind.as_str() {
                "AWS" if value == "*" => Named::Caller,
                "AWS" if caller.itself_is(value) => Named::Caller,
                "AWS" if caller.role_is(value) => Named::Role,
                "AWS" if caller.account_is(value) => Named::Account,
                "Service" => match caller {
                    Caller::Service(name) if name.eq_ignore_ascii_case(value) => Named::Caller,
                    _ => Named::No,
                },
                "Federated" => match caller {
                    Caller::WebIdentity(name) if name == value => Named::Caller,
                    _ => Named::No,
                },
                _ => Named::No,
            };
            best = best.max(named);
        }
    }
    best
}

/// Whether a Deny's `NotPrincipal` spares `caller`. AWS checks the caller's account and
/// then the caller (for a session: the role, or the session), so both must be listed: a
/// `NotPrincipal` naming only a role still denies its sessions unless the account is there
/// too. A principal with a permissions boundary is never spared
/// (`reference_policies_elements_notprincipal`: "will always deny any IAM principal that
/// has a permissions boundary policy attached").
pub fn not_principal_spares(principal: &Principal, caller: &Caller, has_boundary: bool) -> Truth {
    if has_boundary {
        return Truth::False;
    }
    let map = match principal {
        Principal::Any(_) => return Truth::True,
        Principal::Map(map) => map,
    };
    let listed = |test: &dyn Fn(&str, &str) -> bool| {
        map.iter()
            .any(|(kind, values)| values.iter().any(|value| test(kind, value)))
    };
    if listed(&|kind, value| kind == "AWS" && value == "*") {
        return Truth::True;
    }
    let spared = match caller {
        Caller::Unnamed => false,
        Caller::Service(name) => {
            listed(&|kind, value| kind == "Service" && value.eq_ignore_ascii_case(name))
        }
        Caller::WebIdentity(name) => listed(&|kind, value| kind == "Federated" && value == name),
        Caller::Root { .. } => listed(&|kind, value| kind == "AWS" && caller.account_is(value)),
        _ => {
            listed(&|kind, value| kind == "AWS" && caller.account_is(value))
                && listed(&|kind, value| {
                    kind == "AWS" && (caller.itself_is(value) || caller.role_is(value))
                })
        }
    };
    Truth::from(spared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::document::PolicyDocument;

    fn principal(json: &str) -> Principal {
        let doc = PolicyDocument::parse(&format!(
            r#"{{"Statement":{{"Effect":"Deny","Principal":{json},"Action":"s3:*","Resource":"*"}}}}"#
        ))
        .expect("parses");
        doc.statements()[0].principal.clone().expect("principal")
    }

    fn caller(text: &str) -> Caller {
        Caller::parse(text).expect(text)
    }

    #[test]
    fn callers_parse_from_arns_and_service_names() {
        assert_eq!(
            caller("arn:aws:iam::111122223333:root"),
            Caller::Root {
                partition: "aws".into(),
                account: "111122223333".into()
            }
        );
        assert!(matches!(
            caller("arn:aws:iam::111122223333:role/aws-service-role/elasticbeanstalk.amazonaws.com/AWSServiceRoleForElasticBeanstalk"),
            Caller::Role { service_linked: true, ref name, .. } if name == "AWSServiceRoleForElasticBeanstalk"
        ));
        assert!(matches!(
            caller("arn:aws:sts::111122223333:assumed-role/app/s-1"),
            Caller::RoleSession { ref role, ref session, service_linked: false, .. } if role == "app" && session == "s-1"
        ));
        assert!(matches!(
            caller("arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForECS/ecs"),
            Caller::RoleSession {
                service_linked: true,
                ..
            }
        ));
        assert_eq!(
            caller("sns.amazonaws.com"),
            Caller::Service("sns.amazonaws.com".into())
        );
        assert_eq!(
            caller("cognito-identity.amazonaws.com"),
            Caller::WebIdentity("cognito-identity.amazonaws.com".into())
        );
        assert!(matches!(
            caller("arn:aws:iam::111122223333:saml-provider/corp"),
            Caller::WebIdentity(_)
        ));
        for bad in [
            "",
            "role/app",
            "arn:aws:iam::1:role/app",
            "arn:aws:s3:::bucket",
            "arn:aws:sts::111122223333:assumed-role/app",
            "arn:aws:iam",
        ] {
            let error = Caller::parse(bad).expect_err(bad).to_string();
            assert!(error.contains("is not a principal"), "{bad}: {error}");
        }
        assert_eq!(
            caller("arn:aws:sts::111122223333:assumed-role/app/s")
                .principal_arn()
                .as_deref(),
            Some("arn:aws:iam::111122223333:role/app")
        );
    }

    #[test]
    fn principals_name_callers_with_a_strength() {
        let session = caller("arn:aws:sts::111122223333:assumed-role/app/s");
        let names = |json: &str| principal_names(&principal(json), &session);
        assert_eq!(names(r#""*""#), Named::Caller);
        assert_eq!(names(r#"{"AWS":"*"}"#), Named::Caller);
        assert_eq!(
            names(r#"{"AWS":"arn:aws:sts::111122223333:assumed-role/app/s"}"#),
            Named::Caller
        );
        assert_eq!(
            names(r#"{"AWS":"arn:aws:sts::111122223333:assumed-role/app/other"}"#),
            Named::No
        );
        assert_eq!(
            names(r#"{"AWS":"arn:aws:iam::111122223333:role/team/app"}"#),
            Named::Role
        );
        assert_eq!(
            names(r#"{"AWS":"arn:aws:iam::444455556666:role/app"}"#),
            Named::No
        );
        assert_eq!(names(r#"{"AWS":"111122223333"}"#), Named::Account);
        assert_eq!(
            names(
                r#"{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::111122223333:role/app"]}"#
            ),
            Named::Role
        );
        assert_eq!(names(r#"{"Service":"sns.amazonaws.com"}"#), Named::No);
        let sns = caller("sns.amazonaws.com");
        assert_eq!(
            principal_names(&principal(r#"{"Service":"SNS.amazonaws.com"}"#), &sns),
            Named::Caller
        );
        assert_eq!(
            principal_names(&principal(r#"{"AWS":"111122223333"}"#), &Caller::Unnamed),
            Named::No
        );
    }

    #[test]
    fn not_principal_spares_only_a_fully_listed_caller() {
        let session = caller("arn:aws:sts::111122223333:assumed-role/app/s");
        let spares =
            |json: &str, boundary: bool| not_principal_spares(&principal(json), &session, boundary);
        assert_eq!(
            spares(r#"{"AWS":"arn:aws:iam::111122223333:role/app"}"#, false),
            Truth::False
        );
        assert_eq!(
            spares(
                r#"{"AWS":["arn:aws:iam::111122223333:role/app","arn:aws:iam::111122223333:root"]}"#,
                false
            ),
            Truth::True
        );
        assert_eq!(
            spares(
                r#"{"AWS":["arn:aws:sts::111122223333:assumed-role/app/s","111122223333"]}"#,
                false
            ),
            Truth::True
        );
        assert_eq!(
            spares(
                r#"{"AWS":["arn:aws:iam::111122223333:role/app","arn:aws:iam::111122223333:root"]}"#,
                true
            ),
            Truth::False
        );
        assert_eq!(spares(r#"{"AWS":"*"}"#, false), Truth::True);
    }
}
