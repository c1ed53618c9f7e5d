//! The file language of exports (`Lang`) and the translated CSV header it selects. Import reads
//! a header in any of these languages back.

use crate::instance::ParseError;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    /// The default: the API's own field names are English, and English headers are what most
    /// scripts that read the CSV expect.
    #[default]
    En,
    Zh,
    Ja,
    ZhTw,
}

/// The exported columns, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    QueryId,
    SessionId,
    Database,
    User,
    Status,
    StartTime,
    DurationMs,
    Sql,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Column::QueryId,
        Column::SessionId,
        Column::Database,
        Column::User,
        Column::Status,
        Column::StartTime,
        Column::DurationMs,
        Column::Sql,
    ];
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Zh, Lang::Ja, Lang::ZhTw];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
            Lang::Ja => "ja",
            Lang::ZhTw => "zh-tw",
        }
    }

    /// The header label of a column in this language.
    pub fn label(self, column: Column) -> &'static str {
        use Column::*;
        match (self, column) {
            (Lang::En, QueryId) => "Query ID",
            (Lang::En, SessionId) => "Session ID",
            (Lang::En, Database) => "Database",
            (Lang::En, User) => "User",
            (Lang::En, Status) => "Status",
            (Lang::En, StartTime) => "Start Time (UTC)",
            (Lang::En, DurationMs) => "Duration (ms)",
            (Lang::En, Sql) => "SQL",
            (Lang::Zh, QueryId) => "查询ID",
            (Lang::Zh, SessionId) => "会话ID",
            (Lang::Zh, Database) => "数据库",
            (Lang::Zh, User) => "用户",
            (Lang::Zh, Status) => "状态",
            (Lang::Zh, StartTime) => "开始时间(UTC)",
            (Lang::Zh, DurationMs) => "执行耗时(毫秒)",
            (Lang::Zh, Sql) => "SQL语句",
            (Lang::Ja, QueryId) => "クエリID",
            (Lang::Ja, SessionId) => "セッションID",
            (Lang::Ja, Database) => "データベース",
            (Lang::Ja, User) => "ユーザー",
            (Lang::Ja, Status) => "ステータス",
            (Lang::Ja, StartTime) => "開始時刻(UTC)",
            (Lang::Ja, DurationMs) => "実行時間(ミリ秒)",
            (Lang::Ja, Sql) => "SQL文",
            (Lang::ZhTw, QueryId) => "查詢ID",
            (Lang::ZhTw, SessionId) => "會話ID",
            (Lang::ZhTw, Database) => "資料庫",
            (Lang::ZhTw, User) => "使用者",
            (Lang::ZhTw, Status) => "狀態",
            (Lang::ZhTw, StartTime) => "開始時間(UTC)",
            (Lang::ZhTw, DurationMs) => "執行耗時(毫秒)",
            (Lang::ZhTw, Sql) => "SQL語句",
        }
    }

    pub fn header(self) -> [&'static str; 8] {
        Column::ALL.map(|c| self.label(c))
    }

    /// The language whose header this is, if any.
    pub fn of_header<S: AsRef<str>>(fields: &[S]) -> Option<Lang> {
        Lang::ALL.into_iter().find(|lang| {
            fields.len() == Column::ALL.len()
                && fields
                    .iter()
                    .zip(lang.header())
                    .all(|(got, want)| got.as_ref().trim_start_matches('\u{feff}') == want)
        })
    }
}

impl FromStr for Lang {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Lang::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or(ParseError {
                what: "Lang",
                value: s.chars().take(32).collect(),
                reason: "expected zh, en, ja or zh-tw",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_distinct_complete_labels() {
        for lang in Lang::ALL {
            let header = lang.header();
            let unique: std::collections::HashSet<_> = header.iter().collect();
            assert_eq!(unique.len(), 8, "{lang:?}");
            assert_eq!(Lang::of_header(&header), Some(lang));
        }
        assert_ne!(Lang::Zh.header(), Lang::ZhTw.header());
    }

    #[test]
    fn headers_are_recognised_with_a_bom_and_langs_parse() {
        let mut header = Lang::Ja.header().map(String::from);
        header[0].insert(0, '\u{feff}');
        assert_eq!(Lang::of_header(&header), Some(Lang::Ja));
        assert_eq!(Lang::of_header(&["Query ID"]), None);
        assert_eq!("ZH-TW".parse(), Ok(Lang::ZhTw));
        assert!("fr".parse::<Lang>().is_err());
    }
}
