{% macro drop_models() %}
  {% do run_query("drop table if exists " ~ target.schema ~ ".customer_totals cascade") %}
  {% do run_query("drop view if exists " ~ target.schema ~ ".recent_orders cascade") %}
{% endmacro %}
