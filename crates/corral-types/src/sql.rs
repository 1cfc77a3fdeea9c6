//! sqlx encode/decode of the typed ids and closed sets as TEXT (feature `sqlx`, enabled by the
//! store only), so rows bind and read them as their own types end to end.

/// Implements `Type`, `Encode` and `Decode` for sqlx's `Any` driver over a type stored as TEXT
/// through its `as_str`. With one argument the type is a closed set read back by its `parse`: an
/// unknown value is a corrupt row and fails the read rather than becoming some default. With a
/// second, that function (`String -> Result<Self, BoxDynError>`) reads it back instead.
#[macro_export]
#[doc(hidden)]
macro_rules! sqlx_text {
    ($name:ident) => {
        $crate::sqlx_text!(
            $name,
            |s: String| -> Result<$name, sqlx::error::BoxDynError> {
                $name::parse(&s)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($name), " '{}'"), s).into())
            }
        );
    };
    ($name:ident, $from:expr) => {
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                // Any copies the text into its own buffer either way.
                <String as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let from: fn(String) -> Result<$name, sqlx::error::BoxDynError> = $from;
                from(<String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?)
            }
        }
    };
}

use crate::Role;

sqlx_text!(Role);
