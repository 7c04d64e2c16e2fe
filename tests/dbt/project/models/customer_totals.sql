select customer, count(*) as orders, sum(amount) as total
from {{ ref('recent_orders') }}
group by customer
