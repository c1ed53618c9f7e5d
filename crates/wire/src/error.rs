//! Every wire error code gpdiag can answer, with its HTTP status and published message: the one
//! table that `docs/error-codes.md` documents and the protocol layer renders.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident => ($code:literal, $status:literal, $message:literal), )*) => {
        /// A wire error code. The variant's doc comment says when it is answered.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `Code` string on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The published message, used when the error carries no more specific one.
            pub fn default_message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message,)* }
            }
        }
    };
}

error_codes! {
    /// A required parameter is absent (business or common parameter).
    MissingParameter => ("MissingParameter", 400, "The input parameter that is mandatory for processing this request is not supplied."),
    /// A parameter is present but its value is not acceptable (including malformed encoding,
    /// duplicates and oversized values).
    InvalidParameter => ("InvalidParameter", 400, "The specified parameter is not valid."),
    /// `Format` is neither JSON nor XML.
    InvalidFormat => ("InvalidParameter.Format", 400, "Specified parameter format is not valid."),
    /// `Action` names no action of gpdb 2016-05-03.
    InvalidActionNotFound => ("InvalidAction.NotFound", 404, "Specified api is not found, please check your url and method."),
    /// `Version` is not `2016-05-03`.
    InvalidVersion => ("InvalidVersion", 400, "Specified parameter Version is not valid."),
    /// The AccessKeyId is unknown.
    InvalidAccessKeyIdNotFound => ("InvalidAccessKeyId.NotFound", 404, "Specified access key is not found."),
    /// The AccessKeyId exists but has been disabled.
    InvalidAccessKeyIdInactive => ("InvalidAccessKeyId.Inactive", 400, "Specified access key is disabled."),
    /// The recomputed signature differs from the one sent.
    SignatureDoesNotMatch => ("SignatureDoesNotMatch", 400, "Specified signature is not matched with our calculation."),
    /// The signature is structurally unusable: a garbled Authorization header, or required
    /// headers left out of SignedHeaders.
    IncompleteSignature => ("IncompleteSignature", 400, "The request signature does not conform to Aliyun standards."),
    /// `SignatureMethod` or the Authorization algorithm is not one gpdiag verifies.
    InvalidSignatureMethod => ("InvalidSignatureMethod", 400, "Specified signature method is not valid."),
    /// `Timestamp` / `x-acs-date` is not `YYYY-MM-DDThh:mm:ssZ`.
    InvalidTimeStampFormat => ("InvalidTimeStamp.Format", 400, "Specified time stamp or date value is not well formatted."),
    /// `Timestamp` / `x-acs-date` is more than 15 minutes from the server's clock.
    InvalidTimeStampExpired => ("InvalidTimeStamp.Expired", 400, "Specified time stamp or date value is expired."),
    /// The signature nonce was already used within the replay window.
    SignatureNonceUsed => ("SignatureNonceUsed", 400, "Specified signature nonce was used already."),
    /// The HTTP method is neither GET nor POST.
    UnsupportedHttpMethod => ("UnsupportedHTTPMethod", 400, "This http method not supported."),
    /// The calling account is over its calls-per-second limit.
    ThrottlingUser => ("Throttling.User", 400, "Request was denied due to user flow control."),
    /// The action is over `[limits] api_calls_per_second`, all accounts together.
    ThrottlingApi => ("Throttling.Api", 400, "Request was denied due to api flow control."),
    /// The server as a whole cannot take the request now (the replay memory is full).
    Throttling => ("Throttling", 400, "Request was denied due to request throttling."),
    /// The request body is larger than the server accepts.
    RequestTooLarge => ("RequestEntityTooLarge", 413, "The request body is too large."),
    /// The instance does not exist, or belongs to another account.
    InvalidDBInstanceIdNotFound => ("InvalidDBInstanceId.NotFound", 404, "The specified instance is not found."),
    /// `DescribeDiagnosisSQLInfo` names a query the instance's database does not have.
    InvalidQueryIdNotFound => ("InvalidQueryId.NotFound", 404, "The specified query is not found."),
    /// `CancelDownloadTask` names a download this instance does not have.
    InvalidDownloadIdNotFound => ("InvalidDownloadId.NotFound", 404, "The specified download is not found."),
    /// `CancelDownloadTask` on a download that already finished or failed.
    IncorrectDownloadTaskState => ("IncorrectDownloadTaskState", 400, "The download has already ended."),
    /// The account already runs `[exports] max_running_per_account` exports.
    QuotaExceededDownloadTasks => ("QuotaExceeded.DownloadTasks", 400, "Too many exports are running for this account."),
    /// The instance's minor version is older than V6.3.10.1.
    IncorrectModuleVersion => ("IncorrectModuleVersion", 400, "The specified module version does not support this operation."),
    /// The instance is not in elastic storage mode.
    IncorrectDBInstanceState => ("IncorrectDBInstanceState", 400, "The specified instance state does not support this operation."),
    /// An unexpected server-side failure; details go to the server log only.
    InternalError => ("InternalError", 500, "The request processing has failed due to some unknown error."),
    /// A dependency (the store) is temporarily unavailable.
    ServiceUnavailable => ("ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server."),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client will see it: a code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The code with its published message.
    pub fn code(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }

    pub fn missing(name: &str) -> Self {
        Self::new(
            ErrorCode::MissingParameter,
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    pub fn invalid(name: &str, why: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidParameter,
            format!("The specified parameter \"{name}\" is not valid: {why}."),
        )
    }

    pub fn internal() -> Self {
        Self::code(ErrorCode::InternalError)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_4xx_or_5xx() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!((400..600).contains(&code.http_status()), "{code}");
            assert!(!code.default_message().is_empty());
        }
    }

    #[test]
    fn only_internal_and_unavailable_are_server_errors() {
        let server: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|c| c.http_status() >= 500)
            .collect();
        assert_eq!(
            server,
            [&ErrorCode::InternalError, &ErrorCode::ServiceUnavailable]
        );
    }
}

#[cfg(test)]
mod reference_doc {
    use super::ErrorCode;

    /// The published reference must list every code with its status, and nothing else.
    #[test]
    fn docs_error_codes_md_lists_every_code_with_its_status() {
        let doc = include_str!("../../../docs/error-codes.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(
                doc.contains(&row),
                "docs/error-codes.md lacks the row {row}"
            );
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            ErrorCode::ALL.len(),
            "docs/error-codes.md lists codes that do not exist"
        );
    }
}
