//! Dates and times: the current time, civil-day arithmetic, `DATE_FORMAT`,
//! and the time functions (`YEAR`, `DATEDIFF`, `DAYNAME`, ...).

use crate::error::SqlError;
use crate::value::Value;

/// The current UTC time as a DATETIME.
pub fn now() -> Value {
    let t = time::OffsetDateTime::now_utc();
    Value::DateTime {
        year: t.year().clamp(0, 9999) as u16,
        month: u8::from(t.month()),
        day: t.day(),
        hour: t.hour(),
        minute: t.minute(),
        second: t.second(),
        micros: 0,
    }
}

/// `CONVERT_TZ(dt, from, to)` between `+hh:mm` offsets. Named zones need
/// MySQL's time zone tables, which tiox does not load: NULL, as MySQL
/// answers without them.
fn convert_tz(v: &Value, from: &Value, to: &Value) -> Value {
    fn offset(z: &Value) -> Option<i64> {
        let s = z.to_string();
        let (sign, rest) = match s.trim().split_at_checked(1)? {
            ("+", r) => (1, r),
            ("-", r) => (-1, r),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
    }
    let (Some(f), Some(t)) = (offset(from), offset(to)) else {
        return Value::Null;
    };
    let Some(Value::DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    }) = crate::engine::types::to_datetime(v)
    else {
        return Value::Null;
    };
    let ((y, mo, d), rem) = add_seconds(
        (year.into(), month.into(), day.into()),
        i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second),
        t - f,
    );
    match u16::try_from(y) {
        Ok(year) if (1..=9999).contains(&year) => Value::DateTime {
            year,
            month: mo as u8,
            day: d as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            micros,
        },
        _ => Value::Null,
    }
}

/// A date and a second of its day moved by `delta` seconds: the new date
/// and second of the day.
pub fn add_seconds(date: (i64, i64, i64), secs: i64, delta: i64) -> ((i64, i64, i64), i64) {
    let total = days_from_civil(date.0, date.1, date.2) * 86_400 + secs + delta;
    (
        civil_from_days(total.div_euclid(86_400)),
        total.rem_euclid(86_400),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `DATE_FORMAT` of a date/datetime with MySQL's % specifiers.
pub fn date_format(v: &Value, fmt: &str) -> Option<String> {
    let Some(Value::DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    }) = crate::engine::types::to_datetime(v)
    else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let dn = days_from_civil(year.into(), month.into(), day.into());
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(s) = chars.next() else { break };
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        match s {
            'Y' => out.push_str(&format!("{year:04}")),
            'y' => out.push_str(&format!("{:02}", year % 100)),
            'm' => out.push_str(&format!("{month:02}")),
            'c' => out.push_str(&month.to_string()),
            'M' => out.push_str(
                MONTHS
                    .get(usize::from(month).wrapping_sub(1))
                    .unwrap_or(&""),
            ),
            'b' => out.push_str(
                MONTHS
                    .get(usize::from(month).wrapping_sub(1))
                    .map_or("", |m| &m[..3]),
            ),
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&day.to_string()),
            'H' => out.push_str(&format!("{hour:02}")),
            'k' => out.push_str(&hour.to_string()),
            'h' | 'I' => out.push_str(&format!("{h12:02}")),
            'l' => out.push_str(&h12.to_string()),
            'i' => out.push_str(&format!("{minute:02}")),
            's' | 'S' => out.push_str(&format!("{second:02}")),
            'f' => out.push_str(&format!("{micros:06}")),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'T' => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            'r' => out.push_str(&format!(
                "{h12:02}:{minute:02}:{second:02} {}",
                if hour < 12 { "AM" } else { "PM" }
            )),
            'W' => out.push_str(DAYS[dn.rem_euclid(7) as usize]),
            'a' => out.push_str(&DAYS[dn.rem_euclid(7) as usize][..3]),
            'w' => out.push_str(&((dn + 4).rem_euclid(7)).to_string()),
            'j' => out.push_str(&format!(
                "{:03}",
                dn - days_from_civil(year.into(), 1, 1) + 1
            )),
            other => out.push(other),
        }
    }
    Some(out)
}

/// The functions of this family by name; `None`: not one of them.
pub fn call(name: &str, args: &[Value]) -> Result<Option<Value>, SqlError> {
    let n = args.len();
    let arity = |ok: bool| super::arity(name, ok);
    Ok(Some(match name {
        "now" | "current_timestamp" | "sysdate" | "localtime" | "localtimestamp"
        | "utc_timestamp" => now(),
        "curdate" | "current_date" | "utc_date" => match now() {
            Value::DateTime {
                year, month, day, ..
            } => Value::Date { year, month, day },
            other => other,
        },
        "curtime" | "current_time" => {
            let Value::DateTime {
                hour,
                minute,
                second,
                ..
            } = now()
            else {
                unreachable!()
            };
            Value::Time {
                negative: false,
                days: 0,
                hours: hour,
                minutes: minute,
                seconds: second,
                micros: 0,
            }
        }
        "convert_tz" => {
            arity(n == 3)?;
            convert_tz(&args[0], &args[1], &args[2])
        }
        "unix_timestamp" => {
            arity(n == 0)?;
            Value::Int(time::OffsetDateTime::now_utc().unix_timestamp())
        }
        "year" | "month" | "day" | "dayofmonth" | "hour" | "minute" | "second" | "date" => {
            arity(n == 1)?;
            let time_part = matches!(name, "hour" | "minute" | "second");
            if time_part && crate::engine::types::to_datetime(&args[0]).is_none() {
                // HOUR('13:05:09'): a TIME (hours past 23 in a duration).
                return Ok(Some(match crate::engine::types::to_time(&args[0]) {
                    Some(Value::Time {
                        days,
                        hours,
                        minutes,
                        seconds,
                        ..
                    }) => Value::Int(match name {
                        "hour" => i64::from(days) * 24 + i64::from(hours),
                        "minute" => minutes.into(),
                        _ => seconds.into(),
                    }),
                    _ => Value::Null,
                }));
            }
            match crate::engine::types::to_datetime(&args[0]) {
                Some(Value::DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    ..
                }) => match name {
                    "year" => Value::Int(year.into()),
                    "month" => Value::Int(month.into()),
                    "day" | "dayofmonth" => Value::Int(day.into()),
                    "hour" => Value::Int(hour.into()),
                    "minute" => Value::Int(minute.into()),
                    "second" => Value::Int(second.into()),
                    _ => Value::Date { year, month, day },
                },
                _ => Value::Null,
            }
        }
        "date_format" => {
            arity(n == 2)?;
            if args.iter().any(Value::is_null) {
                Value::Null
            } else {
                date_format(&args[0], &args[1].to_string()).map_or(Value::Null, Value::Text)
            }
        }
        "datediff" => {
            arity(n == 2)?;
            match (
                crate::engine::types::to_datetime(&args[0]),
                crate::engine::types::to_datetime(&args[1]),
            ) {
                (
                    Some(Value::DateTime {
                        year: y1,
                        month: m1,
                        day: d1,
                        ..
                    }),
                    Some(Value::DateTime {
                        year: y2,
                        month: m2,
                        day: d2,
                        ..
                    }),
                ) => Value::Int(
                    days_from_civil(y1.into(), m1.into(), d1.into())
                        - days_from_civil(y2.into(), m2.into(), d2.into()),
                ),
                _ => Value::Null,
            }
        }
        "dayofweek" | "weekday" | "dayname" | "dayofyear" | "last_day" => {
            arity(n == 1)?;
            let Some(Value::DateTime {
                year, month, day, ..
            }) = crate::engine::types::to_datetime(&args[0])
            else {
                return Ok(Some(Value::Null));
            };
            let days = days_from_civil(year.into(), month.into(), day.into());
            // 1970-01-01 was a Thursday: (days + 4) % 7 counts from Sunday.
            let from_sunday = (days + 4).rem_euclid(7);
            match name {
                "dayofweek" => Value::Int(from_sunday + 1),
                "weekday" => Value::Int((from_sunday + 6) % 7),
                "dayname" => Value::Text(
                    [
                        "Sunday",
                        "Monday",
                        "Tuesday",
                        "Wednesday",
                        "Thursday",
                        "Friday",
                        "Saturday",
                    ][from_sunday as usize]
                        .into(),
                ),
                "dayofyear" => Value::Int(days - days_from_civil(year.into(), 1, 1) + 1),
                _ => Value::Date {
                    year,
                    month,
                    day: crate::engine::types::days_in_month(year.into(), month.into()) as u8,
                },
            }
        }
        _ => return Ok(None),
    }))
}
