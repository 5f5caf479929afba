//! The diesel view of `migrations/`.

diesel::table! {
    sales (id) {
        id -> Int8,
        product_name -> Text,
        price_minor -> Int8,
        total_stock -> Int8,
        per_user_limit -> Int4,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        payment_window_secs -> Int4,
        held -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        sale_id -> Int8,
        user_id -> Text,
        quantity -> Int4,
        amount_minor -> Int8,
        status -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        shipping_priority -> Nullable<Int8>,
        written_at -> Timestamptz,
    }
}

diesel::joinable!(orders -> sales (sale_id));
diesel::allow_tables_to_appear_in_same_query!(sales, orders);
