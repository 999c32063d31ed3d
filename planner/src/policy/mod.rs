//! IAM policies: the document model, the evaluators, and wildcard expansion.
//!
//! - [`document`]: parse (strictly, with the element's path in errors) and serialize
//!   (in the shape it was written) identity, boundary, resource, trust and organization
//!   policies.
//! - [`eval`]: IAM's evaluation logic for identity policies and a permissions boundary,
//!   three-valued so that an unknown condition key yields "depends on condition".
//! - [`layers`]: the whole evaluation logic: SCPs and RCPs, resource-based policies,
//!   boundaries, session policies, cross-account requests and AWS's own rules.
//! - [`principal`]: who makes a request, and how `Principal` / `NotPrincipal` name them.
//! - [`rules`]: what AWS decides whatever the policies say, and the service facts the
//!   evaluation logic turns on.
//! - [`pattern`]: wildcard and policy-variable matching of actions, ARNs and strings.

pub mod document;
pub mod eval;
pub mod layers;
pub mod pattern;
pub mod principal;
pub mod rules;

#[cfg(test)]
mod cases;

pub use document::{
    ConditionBlock, ConditionValue, Effect, OneOrMany, PolicyDocument, PolicyError, PolicyKind,
    Principal, Statement,
};
pub use eval::{
    Context, Decision, Evaluation, Layer, NamedPolicy, Request, StatementRef, Truth, evaluate,
    named,
};
pub use layers::{AccessRequest, Policies, ResourcePolicies, decide, organization_closes};
pub use principal::{Caller, CallerError};
