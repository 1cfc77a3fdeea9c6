//! sqlx encode/decode of the typed ids as TEXT (feature `sqlx`, enabled by the store only), so
//! rows bind and read ids as their own types end to end.

/// Implements `Type`, `Encode` and `Decode` for sqlx's `Any` driver over a `String` newtype.
#[macro_export]
#[doc(hidden)]
macro_rules! sqlx_text {
    ($name:ident) => {
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
                <String as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, sqlx::Any>>::decode(value).map(Self)
            }
        }
    };
}

/// Implements `Type`, `Encode` and `Decode` for sqlx's `Any` driver over a closed set with
/// `as_str` and `parse`; a stored text outside the set is a corrupt row and fails the read.
#[macro_export]
#[doc(hidden)]
macro_rules! sqlx_closed_set {
    ($name:ident) => {
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
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                $name::parse(&s).ok_or_else(|| format!("unknown {} '{s}'", stringify!($name)).into())
            }
        }
    };
}

impl sqlx::Type<sqlx::Any> for crate::Role {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for crate::Role {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
    }
}

/// A stored role outside the closed set is a corrupt row: the read fails rather than
/// granting some default.
impl<'r> sqlx::Decode<'r, sqlx::Any> for crate::Role {
    fn decode(value: <sqlx::Any as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
        crate::Role::parse(&s).ok_or_else(|| format!("unknown role '{s}'").into())
    }
}
