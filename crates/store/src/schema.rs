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
        paid_count -> Int8,
        stock_shards -> Int2,
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

diesel::table! {
    payments (id) {
        id -> Uuid,
        order_id -> Uuid,
        sale_id -> Int8,
        user_id -> Text,
        quantity -> Int4,
        amount_minor -> Int8,
        status -> Text,
        reserved_at -> Timestamptz,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_events (event_id) {
        event_id -> Text,
        payment_id -> Uuid,
        event_type -> Text,
        status_code -> Int4,
        answer -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::joinable!(orders -> sales (sale_id));
diesel::allow_tables_to_appear_in_same_query!(sales, orders, payments, webhook_events);
