-- Test schema for the "find the right tables for a natural-language question" evaluation.
-- Domains: retail / e-commerce, online gaming, and a few customer-support / HR tables.
-- Only CREATE TABLE, COMMENT ON and INSERT INTO ... VALUES are used.

---------------------------------------------------------------------------
-- Retail / e-commerce
---------------------------------------------------------------------------

CREATE TABLE customers (
    customer_id   bigint PRIMARY KEY,
    first_name    varchar(80),
    last_name     varchar(80),
    email         varchar(255),
    phone         varchar(32),
    signup_date   date,
    loyalty_tier  varchar(16),
    marketing_opt_in boolean,
    is_active     boolean
);
COMMENT ON TABLE customers IS 'Registered shoppers of the online store and retail outlets, one row per customer account.';
COMMENT ON COLUMN customers.loyalty_tier IS 'Rewards program tier: bronze, silver, gold, platinum.';
INSERT INTO customers VALUES
 (1001, 'Maria', 'Lopez', 'maria.lopez@example.com', '+1-415-555-0101', '2021-03-14', 'gold', true, true),
 (1002, 'James', 'Okafor', 'jokafor@example.com', '+1-312-555-0147', '2022-11-02', 'silver', false, true),
 (1003, 'Hannah', 'Weber', 'h.weber@example.de', '+49-30-5550-188', '2023-06-21', 'bronze', true, false);

CREATE TABLE cust_addr (
    addr_id       bigint PRIMARY KEY,
    customer_id   bigint,
    addr_type     varchar(16),
    line1         varchar(200),
    line2         varchar(200),
    city          varchar(100),
    state_code    varchar(8),
    postal_code   varchar(16),
    country_code  char(2),
    is_default    boolean
);
INSERT INTO cust_addr VALUES
 (5001, 1001, 'shipping', '742 Valencia St', NULL, 'San Francisco', 'CA', '94110', 'US', true),
 (5002, 1002, 'billing', '18 W Erie St', 'Apt 4B', 'Chicago', 'IL', '60654', 'US', true),
 (5003, 1003, 'shipping', 'Torstrasse 101', NULL, 'Berlin', 'BE', '10119', 'DE', true);

CREATE TABLE categories (
    category_id        integer PRIMARY KEY,
    category_name      varchar(100),
    parent_category_id integer,
    dept_name          varchar(100)
);
INSERT INTO categories VALUES
 (10, 'Footwear', NULL, 'Apparel'),
 (11, 'Hiking Boots', 10, 'Apparel'),
 (20, 'Camping Gear', NULL, 'Outdoor Equipment');

CREATE TABLE suppliers (
    supplier_id    integer PRIMARY KEY,
    supplier_name  varchar(150),
    contact_email  varchar(255),
    country_code   char(2),
    lead_time_days integer,
    payment_terms  varchar(16),
    is_preferred   boolean
);
COMMENT ON TABLE suppliers IS 'Vendors and manufacturers we buy merchandise from, with quoted lead times and payment terms.';
INSERT INTO suppliers VALUES
 (301, 'Summit Footwear Co.', 'orders@summitfootwear.com', 'VN', 45, 'NET30', true),
 (302, 'Northline Outdoor Ltd', 'sales@northline.co.uk', 'GB', 21, 'NET45', false),
 (303, 'Pacific Textile Group', 'b2b@pactex.cn', 'CN', 60, 'NET60', true);

CREATE TABLE products (
    product_id      bigint PRIMARY KEY,
    product_name    varchar(200),
    brand           varchar(100),
    category_id     integer,
    supplier_id     integer,
    list_price      numeric(10,2),
    unit_cost       numeric(10,2),
    launched_on     date,
    is_discontinued boolean
);
COMMENT ON TABLE products IS 'Merchandise catalog: one row per product style sold in stores and online, with list price and unit cost.';
COMMENT ON COLUMN products.unit_cost IS 'Landed cost per unit, used for gross margin.';
INSERT INTO products VALUES
 (7001, 'Trailblazer Waterproof Hiking Boot', 'Ridgeway', 11, 301, 149.99, 62.50, '2022-02-01', false),
 (7002, 'Alpine 2-Person Tent', 'Northline', 20, 302, 229.00, 118.00, '2021-04-15', false),
 (7003, 'Merino Crew Sock 3-Pack', 'Ridgeway', 10, 303, 24.99, 7.10, '2020-09-01', true);

CREATE TABLE prod_sku (
    sku_id      bigint PRIMARY KEY,
    product_id  bigint,
    sku_code    varchar(40),
    color       varchar(40),
    size_label  varchar(16),
    barcode     varchar(20),
    weight_g    integer
);
INSERT INTO prod_sku VALUES
 (90001, 7001, 'RW-TB-BRN-10', 'brown', '10', '0845123000101', 1180),
 (90002, 7002, 'NL-ALP2-GRN', 'forest green', 'OS', '0845123000205', 2650),
 (90003, 7003, 'RW-MCS-GRY-M', 'heather grey', 'M', '0845123000309', 210);

CREATE TABLE warehouses (
    warehouse_id   integer PRIMARY KEY,
    wh_code        varchar(10),
    wh_name        varchar(100),
    city           varchar(100),
    region         varchar(32),
    capacity_units integer,
    opened_on      date
);
COMMENT ON TABLE warehouses IS 'Distribution centers that hold stock and fulfil online orders.';
INSERT INTO warehouses VALUES
 (1, 'RNO1', 'Reno Fulfillment Center', 'Reno', 'US-West', 450000, '2018-05-01'),
 (2, 'DFW2', 'Dallas Distribution Center', 'Dallas', 'US-Central', 380000, '2019-09-15'),
 (3, 'EWR1', 'Newark Cross-Dock', 'Newark', 'US-East', 210000, '2021-01-10');

CREATE TABLE inv_snapshot (
    snapshot_date  date,
    warehouse_id   integer,
    sku_id         bigint,
    on_hand_qty    integer,
    reserved_qty   integer,
    reorder_point  integer,
    PRIMARY KEY (snapshot_date, warehouse_id, sku_id)
);
COMMENT ON TABLE inv_snapshot IS 'Daily end-of-day stock position per warehouse and SKU.';
COMMENT ON COLUMN inv_snapshot.reorder_point IS 'When available units fall below this level a replenishment PO should be raised.';
INSERT INTO inv_snapshot VALUES
 ('2024-05-31', 1, 90001, 42, 30, 50),
 ('2024-05-31', 2, 90002, 310, 12, 80),
 ('2024-05-31', 3, 90003, 5, 0, 120);

CREATE TABLE po_header (
    po_id         bigint PRIMARY KEY,
    supplier_id   integer,
    warehouse_id  integer,
    po_status     varchar(20),
    ordered_on    date,
    expected_on   date,
    received_on   date,
    total_cost    numeric(12,2),
    currency_code char(3)
);
COMMENT ON TABLE po_header IS 'Purchase orders raised to suppliers to replenish warehouse stock.';
INSERT INTO po_header VALUES
 (880001, 301, 1, 'received', '2024-03-01', '2024-04-15', '2024-04-29', 31250.00, 'USD'),
 (880002, 302, 2, 'open', '2024-05-10', '2024-05-31', NULL, 11800.00, 'USD'),
 (880003, 303, 3, 'partially_received', '2024-04-02', '2024-06-01', NULL, 7100.00, 'USD');

CREATE TABLE po_lines (
    po_line_id    bigint PRIMARY KEY,
    po_id         bigint,
    sku_id        bigint,
    qty_ordered   integer,
    qty_received  integer,
    unit_cost     numeric(10,2)
);
INSERT INTO po_lines VALUES
 (1, 880001, 90001, 500, 500, 62.50),
 (2, 880002, 90002, 100, 0, 118.00),
 (3, 880003, 90003, 1000, 400, 7.10);

CREATE TABLE stores (
    store_id       integer PRIMARY KEY,
    store_name     varchar(100),
    store_type     varchar(16),
    city           varchar(100),
    state_code     varchar(8),
    sq_ft          integer,
    opened_on      date,
    manager_emp_id bigint
);
INSERT INTO stores VALUES
 (0, 'Web Store', 'online', NULL, NULL, NULL, '2015-01-01', NULL),
 (14, 'Portland Pearl District', 'flagship', 'Portland', 'OR', 22000, '2016-08-20', 40012),
 (27, 'Denver Cherry Creek', 'mall', 'Denver', 'CO', 9500, '2019-03-02', 40031);

CREATE TABLE orders (
    order_id      bigint PRIMARY KEY,
    customer_id   bigint,
    store_id      integer,
    channel       varchar(16),
    order_status  varchar(16),
    ordered_at    timestamp,
    subtotal      numeric(12,2),
    discount_amt  numeric(10,2),
    tax_amt       numeric(10,2),
    shipping_amt  numeric(10,2),
    total_amt     numeric(12,2),
    coupon_code   varchar(32)
);
COMMENT ON TABLE orders IS 'Customer orders across web, mobile app and in-store POS; one row per order.';
COMMENT ON COLUMN orders.channel IS 'Sales channel: web, app, in_store.';
INSERT INTO orders VALUES
 (2024000101, 1001, 0, 'web', 'shipped', '2024-05-02 14:22:05', 174.98, 15.00, 13.20, 0.00, 173.18, 'SPRING15'),
 (2024000102, 1002, 14, 'in_store', 'completed', '2024-05-03 11:05:40', 229.00, 0.00, 0.00, 0.00, 229.00, NULL),
 (2024000103, 1003, 0, 'app', 'refunded', '2024-05-07 20:41:13', 149.99, 0.00, 28.50, 6.95, 185.44, NULL);

CREATE TABLE order_lines (
    order_line_id bigint PRIMARY KEY,
    order_id      bigint,
    product_id    bigint,
    sku_id        bigint,
    qty           integer,
    unit_price    numeric(10,2),
    discount_amt  numeric(10,2),
    line_total    numeric(12,2)
);
COMMENT ON TABLE order_lines IS 'Line items of customer orders: which SKU, how many units and at what price.';
INSERT INTO order_lines VALUES
 (1, 2024000101, 7001, 90001, 1, 149.99, 15.00, 134.99),
 (2, 2024000101, 7003, 90003, 1, 24.99, 0.00, 24.99),
 (3, 2024000103, 7001, 90001, 1, 149.99, 0.00, 149.99);

CREATE TABLE shipments (
    shipment_id   bigint PRIMARY KEY,
    order_id      bigint,
    warehouse_id  integer,
    carrier       varchar(32),
    service_level varchar(16),
    tracking_no   varchar(64),
    ship_status   varchar(16),
    shipped_at    timestamp,
    promised_by   date,
    delivered_at  timestamp,
    freight_cost  numeric(10,2)
);
COMMENT ON TABLE shipments IS 'Outbound parcels sent to customers, with carrier, tracking and delivery dates.';
INSERT INTO shipments VALUES
 (660001, 2024000101, 1, 'UPS', 'ground', '1Z999AA10123456784', 'delivered', '2024-05-03 09:10:00', '2024-05-08', '2024-05-07 16:45:00', 11.40),
 (660002, 2024000103, 3, 'DHL', 'express', 'JD014600006281234', 'returned', '2024-05-08 08:00:00', '2024-05-12', '2024-05-14 12:30:00', 38.75),
 (660003, 2024000104, 2, 'FedEx', 'ground', '794612345678', 'in_transit', '2024-06-01 17:20:00', '2024-06-06', NULL, 9.85);

CREATE TABLE rma_requests (
    rma_id         bigint PRIMARY KEY,
    order_line_id  bigint,
    requested_at   timestamp,
    reason_code    varchar(32),
    return_status  varchar(16),
    qty_returned   integer,
    item_condition varchar(16),
    restock_flag   boolean
);
COMMENT ON TABLE rma_requests IS 'Return merchandise authorizations: customer requests to send purchased items back.';
COMMENT ON COLUMN rma_requests.reason_code IS 'wrong_size, defective, not_as_described, changed_mind, arrived_late.';
INSERT INTO rma_requests VALUES
 (30001, 3, '2024-05-15 10:00:00', 'wrong_size', 'received', 1, 'new', true),
 (30002, 1, '2024-05-20 18:12:00', 'defective', 'approved', 1, 'damaged', false),
 (30003, 2, '2024-05-21 07:45:00', 'changed_mind', 'rejected', 1, 'used', false);

CREATE TABLE refunds (
    refund_id      bigint PRIMARY KEY,
    order_id       bigint,
    order_line_id  bigint,
    rma_id         bigint,
    refund_amt     numeric(10,2),
    refund_method  varchar(20),
    refund_reason  varchar(64),
    refunded_at    timestamp
);
COMMENT ON TABLE refunds IS 'Money given back to store customers, for returns, price adjustments or cancelled orders.';
INSERT INTO refunds VALUES
 (40001, 2024000103, 3, 30001, 149.99, 'original_payment', 'return', '2024-05-18 09:30:00'),
 (40002, 2024000101, 1, NULL, 10.00, 'store_credit', 'price_adjustment', '2024-05-10 13:00:00'),
 (40003, 2024000101, 1, 30002, 134.99, 'original_payment', 'return', '2024-05-25 15:10:00');

CREATE TABLE payments (
    payment_id    bigint PRIMARY KEY,
    order_id      bigint,
    pay_method    varchar(20),
    card_brand    varchar(20),
    amount        numeric(12,2),
    currency_code char(3),
    pay_status    varchar(16),
    processor_ref varchar(64),
    captured_at   timestamp
);
COMMENT ON TABLE payments IS 'Payment attempts for store orders (card, PayPal, gift card) and their authorization outcome.';
INSERT INTO payments VALUES
 (550001, 2024000101, 'card', 'visa', 173.18, 'USD', 'captured', 'ch_3PAbc12', '2024-05-02 14:22:09'),
 (550002, 2024000103, 'card', 'amex', 185.44, 'USD', 'declined', 'ch_3PAbd77', NULL),
 (550003, 2024000103, 'paypal', NULL, 185.44, 'USD', 'captured', 'PAY-9KX22', '2024-05-07 20:43:01');

CREATE TABLE promotions (
    promo_id      integer PRIMARY KEY,
    promo_name    varchar(120),
    promo_type    varchar(20),
    discount_pct  numeric(5,2),
    starts_on     date,
    ends_on       date,
    channel       varchar(16),
    budget_usd    numeric(12,2)
);
COMMENT ON TABLE promotions IS 'Marketing campaigns and sales events (percentage off, BOGO, free shipping).';
INSERT INTO promotions VALUES
 (801, 'Spring Trail Sale', 'pct_off', 15.00, '2024-04-15', '2024-05-15', 'all', 50000.00),
 (802, 'Black Friday 2023', 'pct_off', 30.00, '2023-11-24', '2023-11-27', 'all', 250000.00),
 (803, 'Free Shipping Weekend', 'free_shipping', NULL, '2024-06-07', '2024-06-09', 'web', 20000.00);

CREATE TABLE coupons (
    coupon_code     varchar(32) PRIMARY KEY,
    promo_id        integer,
    max_redemptions integer,
    times_redeemed  integer,
    single_use      boolean,
    expires_on      date
);
INSERT INTO coupons VALUES
 ('SPRING15', 801, 10000, 4312, false, '2024-05-15'),
 ('BF30VIP', 802, 500, 498, true, '2023-11-27'),
 ('SHIPFREE', 803, NULL, 0, false, '2024-06-09');

CREATE TABLE prod_reviews (
    review_id         bigint PRIMARY KEY,
    product_id        bigint,
    customer_id       bigint,
    star_rating       smallint,
    review_title      varchar(200),
    review_body       text,
    verified_purchase boolean,
    helpful_votes     integer,
    created_at        timestamp
);
COMMENT ON TABLE prod_reviews IS 'Customer-written ratings (1-5 stars) and reviews of products.';
INSERT INTO prod_reviews VALUES
 (1, 7001, 1001, 5, 'Bone dry on a wet trail', 'Wore them through three days of rain, feet stayed dry.', true, 14, '2024-05-20 08:00:00'),
 (2, 7001, 1003, 1, 'Ran small', 'Had to send them back, sizing is off by half a size.', true, 6, '2024-05-16 21:30:00'),
 (3, 7002, 1002, 4, 'Great tent, heavy', 'Easy setup but a bit heavy for backpacking.', false, 2, '2024-05-09 12:14:00');

CREATE TABLE carts (
    cart_id        bigint PRIMARY KEY,
    customer_id    bigint,
    session_token  varchar(64),
    device_type    varchar(16),
    cart_status    varchar(16),
    created_at     timestamp,
    updated_at     timestamp
);
COMMENT ON TABLE carts IS 'Web and app shopping carts; status shows whether the cart converted to an order or was abandoned.';
INSERT INTO carts VALUES
 (120001, 1001, 'c9f1a2e4b7', 'desktop', 'converted', '2024-05-02 14:01:00', '2024-05-02 14:22:05'),
 (120002, 1002, 'a71be0d3c2', 'mobile', 'abandoned', '2024-05-11 22:13:00', '2024-05-11 22:19:40'),
 (120003, NULL, 'f00d1e55aa', 'mobile', 'active', '2024-06-01 09:00:00', '2024-06-01 09:03:12');

CREATE TABLE cart_items (
    cart_item_id bigint PRIMARY KEY,
    cart_id      bigint,
    product_id   bigint,
    sku_id       bigint,
    qty          integer,
    added_at     timestamp,
    removed_at   timestamp
);
INSERT INTO cart_items VALUES
 (1, 120001, 7001, 90001, 1, '2024-05-02 14:02:10', NULL),
 (2, 120002, 7002, 90002, 1, '2024-05-11 22:14:30', NULL),
 (3, 120002, 7003, 90003, 2, '2024-05-11 22:15:02', NULL);

CREATE TABLE loyalty_txn (
    txn_id       bigint PRIMARY KEY,
    customer_id  bigint,
    order_id     bigint,
    points_delta integer,
    txn_type     varchar(16),
    txn_at       timestamp
);
COMMENT ON COLUMN loyalty_txn.txn_type IS 'earn, redeem, expire, adjust.';
INSERT INTO loyalty_txn VALUES
 (1, 1001, 2024000101, 173, 'earn', '2024-05-02 14:22:05'),
 (2, 1001, NULL, -500, 'redeem', '2024-05-20 10:00:00'),
 (3, 1003, NULL, -80, 'expire', '2024-06-01 00:00:00');

CREATE TABLE employees (
    emp_id       bigint PRIMARY KEY,
    first_name   varchar(80),
    last_name    varchar(80),
    job_title    varchar(80),
    store_id     integer,
    hire_date    date,
    term_date    date,
    hourly_rate  numeric(8,2),
    emp_status   varchar(16)
);
COMMENT ON TABLE employees IS 'Retail staff roster: sales associates, cashiers and store managers.';
INSERT INTO employees VALUES
 (40012, 'Priya', 'Natarajan', 'Store Manager', 14, '2016-07-01', NULL, 38.50, 'active'),
 (40031, 'Tom', 'Brennan', 'Store Manager', 27, '2019-02-11', NULL, 36.00, 'active'),
 (40107, 'Lena', 'Park', 'Cashier', 27, '2023-10-05', '2024-04-30', 17.25, 'terminated');

CREATE TABLE emp_shifts (
    shift_id     bigint PRIMARY KEY,
    emp_id       bigint,
    store_id     integer,
    shift_date   date,
    clock_in     timestamp,
    clock_out    timestamp,
    role_on_shift varchar(32)
);
INSERT INTO emp_shifts VALUES
 (1, 40107, 27, '2024-04-13', '2024-04-13 09:00:00', '2024-04-13 17:30:00', 'register'),
 (2, 40031, 27, '2024-04-13', '2024-04-13 08:00:00', '2024-04-13 18:00:00', 'manager_on_duty'),
 (3, 40012, 14, '2024-04-14', '2024-04-14 10:00:00', '2024-04-14 19:00:00', 'manager_on_duty');

CREATE TABLE price_hist (
    price_hist_id  bigint PRIMARY KEY,
    product_id     bigint,
    old_price      numeric(10,2),
    new_price      numeric(10,2),
    effective_from date,
    change_reason  varchar(32),
    changed_by     varchar(64)
);
COMMENT ON TABLE price_hist IS 'Log of list price changes for merchandise (markdowns, increases).';
INSERT INTO price_hist VALUES
 (1, 7001, 139.99, 149.99, '2023-09-01', 'cost_increase', 'pricing_bot'),
 (2, 7003, 24.99, 14.99, '2024-03-01', 'clearance', 'j.diaz'),
 (3, 7002, 249.00, 229.00, '2024-04-15', 'promo_markdown', 'pricing_bot');

---------------------------------------------------------------------------
-- Online game
---------------------------------------------------------------------------

CREATE TABLE players (
    player_id     bigint PRIMARY KEY,
    gamertag      varchar(32),
    email         varchar(255),
    country_code  char(2),
    platform      varchar(16),
    account_level integer,
    is_premium    boolean,
    created_at    timestamp,
    last_seen_at  timestamp
);
COMMENT ON TABLE players IS 'Game accounts: one row per player profile, with platform and account level.';
COMMENT ON COLUMN players.platform IS 'pc, ps5, xbox, ios, android.';
INSERT INTO players VALUES
 (9000001, 'NightOwl_77', 'nightowl77@mail.com', 'US', 'pc', 142, true, '2021-07-19 03:12:00', '2024-06-01 23:40:00'),
 (9000002, 'xXFrostbiteXx', 'frost.bite@mail.com', 'DE', 'ps5', 88, false, '2022-12-25 10:00:00', '2024-05-30 19:05:00'),
 (9000003, 'KimchiKnight', 'kk@mail.kr', 'KR', 'android', 201, true, '2020-11-03 14:45:00', '2024-06-02 08:15:00');

CREATE TABLE game_servers (
    server_id    integer PRIMARY KEY,
    server_name  varchar(64),
    region_code  varchar(16),
    datacenter   varchar(32),
    max_players  integer,
    srv_status   varchar(16)
);
COMMENT ON TABLE game_servers IS 'Dedicated game server shards and the region they are hosted in.';
INSERT INTO game_servers VALUES
 (11, 'na-east-01', 'na-east', 'aws-us-east-1', 5000, 'online'),
 (21, 'eu-west-03', 'eu-west', 'gcp-europe-west4', 5000, 'maintenance'),
 (31, 'ap-se-02', 'ap-se', 'aws-ap-southeast-1', 4000, 'online');

CREATE TABLE plyr_sess (
    session_id     bigint PRIMARY KEY,
    player_id      bigint,
    server_id      integer,
    login_at       timestamp,
    logout_at      timestamp,
    client_version varchar(16),
    ip_country     char(2)
);
INSERT INTO plyr_sess VALUES
 (71000001, 9000001, 11, '2024-06-01 20:02:00', '2024-06-01 23:40:00', '5.12.1', 'US'),
 (71000002, 9000002, 21, '2024-05-30 17:30:00', '2024-05-30 19:05:00', '5.12.0', 'DE'),
 (71000003, 9000003, 31, '2024-06-02 06:10:00', '2024-06-02 08:15:00', '5.12.1', 'KR');

CREATE TABLE seasons (
    season_id    integer PRIMARY KEY,
    season_name  varchar(64),
    starts_on    date,
    ends_on      date,
    is_current   boolean
);
INSERT INTO seasons VALUES
 (11, 'Season 11: Ember Tide', '2024-01-09', '2024-04-08', false),
 (12, 'Season 12: Frostfall', '2024-04-09', '2024-07-08', true),
 (13, 'Season 13: Verdant Rise', '2024-07-09', '2024-10-07', false);

CREATE TABLE heroes (
    hero_id      integer PRIMARY KEY,
    hero_name    varchar(64),
    hero_role    varchar(16),
    difficulty   smallint,
    base_hp      integer,
    release_date date,
    is_free_rotation boolean
);
INSERT INTO heroes VALUES
 (1, 'Valkyra', 'tank', 2, 3200, '2019-05-01', false),
 (2, 'Shadowfang', 'assassin', 3, 1850, '2020-02-14', true),
 (3, 'Mistweaver', 'support', 1, 2100, '2023-08-22', false);

CREATE TABLE matches (
    match_id      bigint PRIMARY KEY,
    server_id     integer,
    season_id     integer,
    game_mode     varchar(16),
    map_name      varchar(64),
    started_at    timestamp,
    duration_sec  integer,
    winning_team  smallint
);
COMMENT ON TABLE matches IS 'Completed game matches with mode (ranked, casual, arena), map, duration and winning team.';
INSERT INTO matches VALUES
 (5500001, 11, 12, 'ranked', 'Shattered Peaks', '2024-06-01 20:15:00', 1840, 1),
 (5500002, 21, 12, 'casual', 'Sunken Harbor', '2024-05-30 17:45:00', 1320, 2),
 (5500003, 31, 12, 'arena', 'Obsidian Pit', '2024-06-02 06:30:00', 540, 1);

CREATE TABLE match_participants (
    match_id      bigint,
    player_id     bigint,
    hero_id       integer,
    team_no       smallint,
    kills         integer,
    deaths        integer,
    assists       integer,
    damage_dealt  bigint,
    is_winner     boolean,
    mmr_change    integer,
    PRIMARY KEY (match_id, player_id)
);
COMMENT ON TABLE match_participants IS 'Per-player stat line for each match: hero played, K/D/A, damage and whether they won.';
INSERT INTO match_participants VALUES
 (5500001, 9000001, 2, 1, 14, 3, 6, 28450, true, 24),
 (5500001, 9000002, 1, 2, 2, 9, 11, 9120, false, -21),
 (5500003, 9000003, 3, 1, 4, 1, 17, 7300, true, 0);

CREATE TABLE item_defs (
    item_id          integer PRIMARY KEY,
    item_name        varchar(100),
    item_type        varchar(20),
    rarity           varchar(16),
    base_value_gold  integer,
    tradable         boolean,
    hero_id          integer
);
COMMENT ON TABLE item_defs IS 'Master list of in-game items: weapons, skins, emotes, consumables, with rarity.';
COMMENT ON COLUMN item_defs.rarity IS 'common, rare, epic, legendary, mythic.';
INSERT INTO item_defs VALUES
 (301, 'Frostbrand Greatsword', 'weapon', 'legendary', 12000, true, 1),
 (302, 'Midnight Shroud Skin', 'skin', 'epic', 0, false, 2),
 (303, 'Potion of Haste', 'consumable', 'common', 50, true, NULL);

CREATE TABLE plyr_inventory (
    inventory_id  bigint PRIMARY KEY,
    player_id     bigint,
    item_id       integer,
    quantity      integer,
    is_equipped   boolean,
    acquired_via  varchar(20),
    acquired_at   timestamp
);
COMMENT ON TABLE plyr_inventory IS 'Items currently owned by each player account (backpack / stash contents).';
INSERT INTO plyr_inventory VALUES
 (1, 9000001, 302, 1, true, 'shop', '2024-04-10 19:00:00'),
 (2, 9000003, 301, 1, true, 'loot_drop', '2024-05-22 07:12:00'),
 (3, 9000002, 303, 37, false, 'quest_reward', '2024-05-28 18:20:00');

CREATE TABLE iap_txn (
    txn_id         bigint PRIMARY KEY,
    player_id      bigint,
    store_sku      varchar(64),
    platform_store varchar(16),
    usd_amount     numeric(10,2),
    local_amount   numeric(10,2),
    local_currency char(3),
    gems_granted   integer,
    txn_status     varchar(16),
    purchased_at   timestamp
);
COMMENT ON TABLE iap_txn IS 'Real-money in-app purchases made through Steam, App Store, Google Play or console stores.';
COMMENT ON COLUMN iap_txn.txn_status IS 'completed, refunded, chargeback, pending.';
INSERT INTO iap_txn VALUES
 (880000001, 9000001, 'gems_1200', 'steam', 19.99, 19.99, 'USD', 1200, 'completed', '2024-05-05 21:00:00'),
 (880000002, 9000003, 'bundle_lny_2024', 'google_play', 49.99, 66000.00, 'KRW', 3000, 'completed', '2024-02-10 09:30:00'),
 (880000003, 9000002, 'battlepass_s12', 'psn', 9.99, 9.49, 'EUR', 0, 'refunded', '2024-04-12 16:45:00');

CREATE TABLE currency_ledger (
    ledger_id     bigint PRIMARY KEY,
    player_id     bigint,
    currency_code varchar(8),
    delta         bigint,
    balance_after bigint,
    reason        varchar(32),
    ref_id        bigint,
    created_at    timestamp
);
COMMENT ON TABLE currency_ledger IS 'Every change to a player''s virtual wallet (gems, gold), with the reason it was earned or spent.';
COMMENT ON COLUMN currency_ledger.currency_code IS 'GEM (premium currency) or GOLD (soft currency).';
INSERT INTO currency_ledger VALUES
 (1, 9000001, 'GEM', 1200, 1450, 'iap', 880000001, '2024-05-05 21:00:01'),
 (2, 9000001, 'GEM', -950, 500, 'shop_purchase', 3, '2024-05-05 21:04:10'),
 (3, 9000002, 'GOLD', 350, 18200, 'match_reward', 5500001, '2024-06-01 20:46:00');

CREATE TABLE shop_offers (
    offer_id       integer PRIMARY KEY,
    item_id        integer,
    price_currency varchar(8),
    price_amount   integer,
    offer_slot     varchar(16),
    starts_at      timestamp,
    ends_at        timestamp
);
INSERT INTO shop_offers VALUES
 (1, 302, 'GEM', 950, 'featured', '2024-05-01 00:00:00', '2024-05-08 00:00:00'),
 (2, 303, 'GOLD', 75, 'daily', '2024-05-28 00:00:00', '2024-05-29 00:00:00'),
 (3, 301, 'GEM', 2400, 'weekly', '2024-06-03 00:00:00', '2024-06-10 00:00:00');

CREATE TABLE shop_purchases (
    purchase_id    bigint PRIMARY KEY,
    player_id      bigint,
    offer_id       integer,
    currency_code  varchar(8),
    amount_spent   integer,
    purchased_at   timestamp
);
COMMENT ON TABLE shop_purchases IS 'Items bought in the in-game shop with virtual currency.';
INSERT INTO shop_purchases VALUES
 (1, 9000002, 2, 'GOLD', 75, '2024-05-28 18:19:00'),
 (2, 9000003, 3, 'GEM', 2400, '2024-06-03 05:00:00'),
 (3, 9000001, 1, 'GEM', 950, '2024-05-05 21:04:10');

CREATE TABLE leaderboard_entries (
    season_id    integer,
    board_type   varchar(20),
    player_id    bigint,
    rank_pos     integer,
    rating       integer,
    snapshot_at  timestamp,
    PRIMARY KEY (season_id, board_type, player_id, snapshot_at)
);
COMMENT ON TABLE leaderboard_entries IS 'Hourly snapshots of the competitive ladders (ranked solo, ranked team, arena) with each player''s position and rating.';
INSERT INTO leaderboard_entries VALUES
 (12, 'ranked_solo', 9000003, 1, 3412, '2024-06-02 09:00:00'),
 (12, 'ranked_solo', 9000001, 57, 2890, '2024-06-02 09:00:00'),
 (12, 'arena', 9000002, 1204, 1710, '2024-06-02 09:00:00');

CREATE TABLE achievements (
    achievement_id integer PRIMARY KEY,
    ach_name       varchar(100),
    ach_desc       text,
    points         integer,
    is_hidden      boolean
);
COMMENT ON TABLE achievements IS 'Definitions of unlockable achievements/trophies.';
INSERT INTO achievements VALUES
 (1, 'First Blood', 'Get the first kill of a match.', 10, false),
 (2, 'Untouchable', 'Win a ranked match without dying.', 50, false),
 (3, 'Dragon Slayer', 'Defeat the Ancient Wyrm raid boss on Mythic.', 100, true);

CREATE TABLE plyr_ach (
    player_id      bigint,
    achievement_id integer,
    unlocked_at    timestamp,
    PRIMARY KEY (player_id, achievement_id)
);
INSERT INTO plyr_ach VALUES
 (9000001, 1, '2021-07-19 04:02:00'),
 (9000003, 2, '2023-02-11 13:30:00'),
 (9000003, 3, '2024-05-22 07:12:00');

CREATE TABLE guilds (
    guild_id         bigint PRIMARY KEY,
    guild_name       varchar(64),
    guild_tag        varchar(6),
    region_code      varchar(16),
    leader_player_id bigint,
    member_cap       integer,
    founded_at       timestamp
);
COMMENT ON TABLE guilds IS 'Player-run guilds (clans) with their tag, region and leader.';
INSERT INTO guilds VALUES
 (501, 'Iron Wolves', 'IWLF', 'na-east', 9000001, 50, '2021-09-01 18:00:00'),
 (502, 'Seoul Sentinels', 'SSNT', 'ap-se', 9000003, 100, '2020-12-20 11:00:00'),
 (503, 'Nordic Ravens', 'NRVN', 'eu-west', 9000002, 50, '2023-01-15 20:00:00');

CREATE TABLE guild_members (
    guild_id    bigint,
    player_id   bigint,
    guild_rank  varchar(16),
    joined_at   timestamp,
    left_at     timestamp,
    PRIMARY KEY (guild_id, player_id, joined_at)
);
INSERT INTO guild_members VALUES
 (501, 9000001, 'leader', '2021-09-01 18:00:00', NULL),
 (502, 9000003, 'leader', '2020-12-20 11:00:00', NULL),
 (501, 9000002, 'member', '2022-02-03 19:00:00', '2023-01-15 19:55:00');

CREATE TABLE chat_msgs (
    msg_id         bigint PRIMARY KEY,
    channel_type   varchar(16),
    sender_id      bigint,
    guild_id       bigint,
    recipient_id   bigint,
    msg_text       text,
    flagged_toxic  boolean,
    sent_at        timestamp
);
COMMENT ON TABLE chat_msgs IS 'In-game chat messages (global, guild, whisper, match) with automated toxicity flag.';
INSERT INTO chat_msgs VALUES
 (1, 'guild', 9000001, 501, NULL, 'raid at 9 tonight, bring potions', false, '2024-06-01 19:50:00'),
 (2, 'match', 9000002, NULL, NULL, 'uninstall the game you noob', true, '2024-06-01 20:30:00'),
 (3, 'whisper', 9000003, NULL, 9000001, 'gg, want to duo?', false, '2024-06-02 06:50:00');

CREATE TABLE friend_links (
    player_id        bigint,
    friend_player_id bigint,
    link_status      varchar(16),
    created_at       timestamp,
    PRIMARY KEY (player_id, friend_player_id)
);
INSERT INTO friend_links VALUES
 (9000001, 9000003, 'accepted', '2022-03-05 12:00:00'),
 (9000003, 9000001, 'accepted', '2022-03-05 12:00:00'),
 (9000002, 9000001, 'pending', '2024-06-01 20:50:00');

CREATE TABLE player_reports (
    report_id          bigint PRIMARY KEY,
    reporter_id        bigint,
    reported_player_id bigint,
    match_id           bigint,
    report_reason      varchar(20),
    details            text,
    reviewed           boolean,
    created_at         timestamp
);
COMMENT ON TABLE player_reports IS 'Reports filed by players against other players (cheating, toxicity, griefing, AFK).';
INSERT INTO player_reports VALUES
 (1, 9000001, 9000002, 5500001, 'toxicity', 'abusive chat in match', true, '2024-06-01 20:50:00'),
 (2, 9000002, 9000001, 5500001, 'cheating', 'aimbot, hits every shot', false, '2024-06-01 20:51:00'),
 (3, 9000003, 9000002, NULL, 'griefing', NULL, false, '2024-06-02 07:00:00');

CREATE TABLE acct_bans (
    ban_id      bigint PRIMARY KEY,
    player_id   bigint,
    ban_type    varchar(16),
    ban_reason  varchar(32),
    issued_by   varchar(32),
    banned_at   timestamp,
    expires_at  timestamp
);
COMMENT ON TABLE acct_bans IS 'Account suspensions and permanent bans issued by anti-cheat or moderators.';
INSERT INTO acct_bans VALUES
 (1, 9000002, 'chat_mute', 'toxicity', 'mod:ellen', '2024-06-01 21:30:00', '2024-06-04 21:30:00'),
 (2, 9000777, 'permanent', 'cheating', 'anticheat', '2024-03-12 02:00:00', NULL),
 (3, 9000888, 'temporary', 'smurfing', 'mod:raj', '2024-05-18 15:00:00', '2024-06-18 15:00:00');

CREATE TABLE tournaments (
    tourney_id     integer PRIMARY KEY,
    tourney_name   varchar(100),
    season_id      integer,
    region_code    varchar(16),
    format         varchar(32),
    entry_fee_gems integer,
    prize_pool_usd numeric(12,2),
    starts_on      date
);
COMMENT ON TABLE tournaments IS 'Organized esports and community tournaments with prize pools.';
INSERT INTO tournaments VALUES
 (1, 'Frostfall Invitational', 12, 'na-east', 'double_elim', 0, 100000.00, '2024-06-15'),
 (2, 'EU Weekly Cup #23', 12, 'eu-west', 'swiss', 200, 500.00, '2024-05-25'),
 (3, 'APAC Masters', 11, 'ap-se', 'single_elim', 0, 50000.00, '2024-03-30');

CREATE TABLE tourney_entries (
    tourney_id      integer,
    player_id       bigint,
    seed            integer,
    final_placement integer,
    prize_won_usd   numeric(12,2),
    PRIMARY KEY (tourney_id, player_id)
);
INSERT INTO tourney_entries VALUES
 (3, 9000003, 1, 1, 20000.00),
 (2, 9000002, 14, 3, 75.00),
 (1, 9000001, 8, NULL, NULL);

CREATE TABLE bp_tiers (
    season_id        integer,
    tier_no          integer,
    xp_required      integer,
    is_premium_track boolean,
    reward_item_id   integer,
    reward_gems      integer,
    PRIMARY KEY (season_id, tier_no, is_premium_track)
);
COMMENT ON TABLE bp_tiers IS 'Battle pass reward track per season: XP needed for each tier and the reward granted (free vs premium track).';
INSERT INTO bp_tiers VALUES
 (12, 1, 0, false, 303, 0),
 (12, 50, 245000, true, 301, 0),
 (12, 100, 500000, true, NULL, 1000);

CREATE TABLE bp_progress (
    player_id        bigint,
    season_id        integer,
    current_tier     integer,
    season_xp        integer,
    has_premium_pass boolean,
    pass_bought_at   timestamp,
    PRIMARY KEY (player_id, season_id)
);
INSERT INTO bp_progress VALUES
 (9000001, 12, 64, 318000, true, '2024-04-09 18:00:00'),
 (9000002, 12, 12, 58000, false, NULL),
 (9000003, 12, 100, 512000, true, '2024-04-09 00:05:00');

CREATE TABLE quests (
    quest_id    integer PRIMARY KEY,
    quest_name  varchar(100),
    quest_type  varchar(16),
    xp_reward   integer,
    gold_reward integer,
    min_level   integer
);
COMMENT ON TABLE quests IS 'Quest and mission definitions (daily, weekly, story) with their XP and gold rewards.';
INSERT INTO quests VALUES
 (1, 'Win 3 Matches', 'daily', 2500, 150, 1),
 (2, 'Deal 50,000 Damage as a Tank', 'weekly', 12000, 600, 10),
 (3, 'The Frozen Crown', 'story', 30000, 2000, 40);

CREATE TABLE quest_progress (
    player_id    bigint,
    quest_id     integer,
    q_status     varchar(16),
    progress_pct numeric(5,2),
    started_at   timestamp,
    completed_at timestamp,
    PRIMARY KEY (player_id, quest_id, started_at)
);
INSERT INTO quest_progress VALUES
 (9000001, 1, 'completed', 100.00, '2024-06-01 20:00:00', '2024-06-01 22:10:00'),
 (9000002, 1, 'abandoned', 33.33, '2024-05-30 17:30:00', NULL),
 (9000003, 3, 'in_progress', 60.00, '2024-05-20 06:00:00', NULL);

CREATE TABLE loot_drops (
    drop_id     bigint PRIMARY KEY,
    player_id   bigint,
    match_id    bigint,
    item_id     integer,
    drop_source varchar(20),
    dropped_at  timestamp
);
COMMENT ON TABLE loot_drops IS 'Random item rewards players receive from chests, bosses and end-of-match rewards.';
INSERT INTO loot_drops VALUES
 (1, 9000003, NULL, 301, 'boss', '2024-05-22 07:12:00'),
 (2, 9000001, 5500001, 303, 'match_reward', '2024-06-01 20:46:00'),
 (3, 9000002, NULL, 302, 'chest', '2024-05-29 18:00:00');

---------------------------------------------------------------------------
-- Customer support and HR
---------------------------------------------------------------------------

CREATE TABLE support_agents (
    agent_id   integer PRIMARY KEY,
    full_name  varchar(120),
    team       varchar(32),
    hired_on   date,
    is_active  boolean
);
COMMENT ON TABLE support_agents IS 'Customer support representatives and the team they belong to.';
INSERT INTO support_agents VALUES
 (1, 'Ellen Marsh', 'trust_safety', '2021-02-01', true),
 (2, 'Raj Patel', 'billing', '2022-06-13', true),
 (3, 'Sofia Rossi', 'order_support', '2020-10-05', false);

CREATE TABLE support_tickets (
    ticket_id         bigint PRIMARY KEY,
    requester_type    varchar(16),
    requester_id      bigint,
    product_line      varchar(16),
    channel           varchar(16),
    subject           varchar(200),
    priority          varchar(8),
    ticket_status     varchar(16),
    assigned_agent_id integer,
    created_at        timestamp,
    first_response_at timestamp,
    resolved_at       timestamp
);
COMMENT ON TABLE support_tickets IS 'Help desk tickets raised by store customers or game players.';
COMMENT ON COLUMN support_tickets.requester_type IS 'customer (retail) or player (game).';
INSERT INTO support_tickets VALUES
 (100001, 'player', 9000002, 'game', 'in_app', 'Gems not received after purchase', 'high', 'open', 2, '2024-06-01 10:00:00', '2024-06-01 12:30:00', NULL),
 (100002, 'customer', 1003, 'store', 'email', 'Where is my refund?', 'normal', 'resolved', 3, '2024-05-19 08:00:00', '2024-05-19 15:00:00', '2024-05-21 09:00:00'),
 (100003, 'player', 9000001, 'game', 'web_form', 'Wrongly banned for cheating', 'urgent', 'pending', 1, '2024-06-02 01:00:00', NULL, NULL);

CREATE TABLE ticket_comments (
    comment_id   bigint PRIMARY KEY,
    ticket_id    bigint,
    author_type  varchar(16),
    author_id    bigint,
    is_public    boolean,
    body         text,
    created_at   timestamp
);
INSERT INTO ticket_comments VALUES
 (1, 100001, 'agent', 2, true, 'Sorry about that! Can you share the order id from Google Play?', '2024-06-01 12:30:00'),
 (2, 100001, 'requester', 9000002, true, 'GPA.3312-4410-2231-88412', '2024-06-01 13:05:00'),
 (3, 100002, 'agent', 3, false, 'Refund issued 05/18, waiting on bank.', '2024-05-19 15:00:00');

CREATE TABLE csat_responses (
    response_id   bigint PRIMARY KEY,
    ticket_id     bigint,
    score         smallint,
    survey_comment text,
    submitted_at  timestamp
);
COMMENT ON TABLE csat_responses IS 'Post-resolution satisfaction survey answers (1-5) for support tickets.';
INSERT INTO csat_responses VALUES
 (1, 100002, 4, 'Took a while but Sofia was helpful.', '2024-05-21 12:00:00'),
 (2, 99871, 1, 'Nobody answered for a week.', '2024-05-02 09:00:00'),
 (3, 99910, 5, NULL, '2024-05-12 17:40:00');

CREATE TABLE sla_policies (
    priority           varchar(8) PRIMARY KEY,
    first_response_hrs integer,
    resolution_hrs     integer
);
INSERT INTO sla_policies VALUES
 ('urgent', 1, 8),
 ('high', 4, 24),
 ('normal', 24, 72);

CREATE TABLE hr_payroll (
    pay_line_id    bigint PRIMARY KEY,
    emp_id         bigint,
    period_start   date,
    period_end     date,
    regular_hours  numeric(6,2),
    overtime_hours numeric(6,2),
    gross_pay      numeric(10,2),
    net_pay        numeric(10,2),
    paid_on        date
);
COMMENT ON TABLE hr_payroll IS 'Bi-weekly payroll results per employee: hours worked, overtime and gross/net pay.';
INSERT INTO hr_payroll VALUES
 (1, 40012, '2024-04-01', '2024-04-14', 80.00, 6.50, 3455.38, 2512.10, '2024-04-19'),
 (2, 40031, '2024-04-01', '2024-04-14', 80.00, 0.00, 2880.00, 2130.75, '2024-04-19'),
 (3, 40107, '2024-04-01', '2024-04-14', 62.50, 3.00, 1155.75, 968.20, '2024-04-19');

CREATE TABLE pto_requests (
    request_id  bigint PRIMARY KEY,
    emp_id      bigint,
    leave_type  varchar(16),
    start_date  date,
    end_date    date,
    days        numeric(4,1),
    req_status  varchar(16),
    approver_id bigint
);
INSERT INTO pto_requests VALUES
 (1, 40107, 'vacation', '2024-04-20', '2024-04-27', 5.0, 'approved', 40031),
 (2, 40012, 'sick', '2024-05-06', '2024-05-06', 1.0, 'approved', NULL),
 (3, 40031, 'vacation', '2024-07-01', '2024-07-12', 10.0, 'pending', 40012);
