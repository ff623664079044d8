-- Security hardening from the adversarial review: table privileges API roles never need,
-- and KIE callbacks that cannot be replayed inside their signature window (cron_trim_history
-- forgets the receipts after a day). Re-runnable; additive.

-- ---------------------------------------------------------------------------------------
-- Privileges: TRUNCATE, TRIGGER and REFERENCES on generations
-- ---------------------------------------------------------------------------------------
-- Supabase's default privileges grant ALL on new public tables to anon and authenticated.
-- TRUNCATE ignores RLS, TRIGGER lets a role attach code that runs on every write of every
-- user, REFERENCES lets it pin rows with a foreign key. PostgREST never issues any of them
-- and an app's select/insert/update/delete keep working, so revoking them changes no app
-- statement. On a Supabase project `postgres` owns public tables, so this revoke works there.
revoke truncate, trigger, references on table public.generations from public, anon, authenticated;

-- The same three on storage.objects: the platform's table. `postgres` does not own it on a
-- real project, where such a revoke only warns; it is tried, never required.
do $$
begin
  revoke truncate, trigger, references on table storage.objects from anon, authenticated;
exception when insufficient_privilege then
  raise notice 'storage.objects privileges belong to the platform: left as they are';
end
$$;

-- ---------------------------------------------------------------------------------------
-- KIE callback receipts: one use per signature
-- ---------------------------------------------------------------------------------------
-- KIE signs only `taskId.timestamp`, not the body, so a captured signed callback would
-- authorise any body for that task until the timestamp leaves the ±300 s window. Each
-- accepted (task, timestamp) is remembered with the body's hash: the same delivery again
-- (KIE retrying) is a repeat and changes nothing; another body under the same signature is
-- a replay and is refused.
create table if not exists public.kie_callback_receipts (
  task_id text not null,
  signed_at bigint not null,          -- X-Webhook-Timestamp, Unix seconds
  body_sha256 text not null,
  received_at timestamptz not null default now(),
  primary key (task_id, signed_at)
);
comment on table public.kie_callback_receipts is
  'Signed KIE callbacks accepted, by (task_id, X-Webhook-Timestamp), kept past the signature window (cron_trim_history removes them after a day). Service only.';
create index if not exists kie_callback_receipts_received_idx on public.kie_callback_receipts (received_at);
alter table public.kie_callback_receipts enable row level security;
revoke all on table public.kie_callback_receipts from public, anon, authenticated;
grant select, insert, delete on table public.kie_callback_receipts to service_role;

create or replace function public.record_kie_callback(p_task_id text, p_signed_at bigint, p_body_sha256 text)
returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_known text;
begin
  insert into public.kie_callback_receipts (task_id, signed_at, body_sha256)
  values (p_task_id, p_signed_at, p_body_sha256)
  on conflict (task_id, signed_at) do nothing;
  if found then
    return 'first';
  end if;
  select r.body_sha256 into v_known
    from public.kie_callback_receipts r
   where r.task_id = p_task_id and r.signed_at = p_signed_at;
  return case when v_known = p_body_sha256 then 'repeat' else 'replay' end;
end
$$;
comment on function public.record_kie_callback(text, bigint, text) is
  'Remembers a signed KIE callback: ''first'' (new signature), ''repeat'' (same signature, same body: a redelivery), ''replay'' (same signature, another body: refuse). SECURITY DEFINER: service only.';
revoke all on function public.record_kie_callback(text, bigint, text) from public, anon, authenticated;
grant execute on function public.record_kie_callback(text, bigint, text) to service_role;
