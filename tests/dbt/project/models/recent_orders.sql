select id, customer, amount, ordered_at
from {{ ref('orders') }}
where ordered_at >= '2024-01-02T00:00:00'::timestamp
