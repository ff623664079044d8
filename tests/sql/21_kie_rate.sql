-- KIE's rate across every caller (migrations/20261203101500_dispatch_scope.sql): kie_rate_acquire()
-- hands out record-info slots kie_rate_interval() apart from one row, answers how long to wait,
-- and takes nothing from a caller that cannot wait that long. The row stays locked by this
-- transaction after its first slot, so no other caller's slot lands between these.
begin;
select plan(27);

-- ---- the constants
select is(public.kie_rate_limit(), 10, 'KIE''s rate: 10 record-info calls a second by default');
select is(public.kie_rate_interval(), interval '110 milliseconds', 'one slot every 110 ms (1.1 s / 10: headroom for jitter)');
set local app.kie_rate_limit = '2';
select is(public.kie_rate_limit(), 2, 'app.kie_rate_limit sets the limit');
select is(public.kie_rate_interval(), interval '550 milliseconds', '… and the spacing follows it');
set local app.kie_rate_limit = '0';
select is(public.kie_rate_limit(), 1, 'a limit below 1 is 1');
set local app.kie_rate_limit = '';
select is(public.kie_rate_limit(), 10, 'an empty setting is the default');

-- ---- slots in a row
-- (`x between a and b` evaluates x twice: each slot is taken once in a subquery, `offset 0`
-- keeping the planner from pulling it up)
update public.kie_rate set next_at = '-infinity';
select is(public.kie_rate_acquire(), 0, 'a free rate: the first call goes at once');
select ok(w between 90 and 110, 'the next waits one interval') from (select public.kie_rate_acquire() as w offset 0) s;
select ok(w between 200 and 220, 'the one after that two') from (select public.kie_rate_acquire() as w offset 0) s;
create temp table next_before as select next_at from public.kie_rate;
select is(public.kie_rate_acquire(50), null, 'a caller that can wait 50 ms gets no slot 330 ms away');
select is(public.kie_rate_acquire(0), null, '… nor one that cannot wait at all');
select is((select next_at from public.kie_rate), (select next_at from next_before), 'and takes nothing: the next slot is where it was');
select ok(w between 300 and 330, 'a caller that can wait gets that slot') from (select public.kie_rate_acquire(1000) as w offset 0) s;
select ok(public.kie_rate_acquire(-5) is null, 'a negative wait is no wait');

-- ---- a second holds at most the limit
update public.kie_rate set next_at = '-infinity';
create temp table slots as
  select g, clock_timestamp() + public.kie_rate_acquire() * interval '1 millisecond' as at
    from generate_series(1, 21) g;
select is((select count(*)::int from slots), 21, 'twenty-one slots taken back to back');
select ok((select bool_and(b.at - a.at >= interval '100 milliseconds') from slots a join slots b on b.g = a.g + 1),
  'consecutive slots are at least 100 ms apart');
select ok((select bool_and(b.at - a.at >= interval '1 second') from slots a join slots b on b.g = a.g + 10),
  'the eleventh slot after any slot is a second or more later: no second holds more than ten');
select ok((select max(at) - min(at) from slots) between interval '2190 milliseconds' and interval '2300 milliseconds',
  '21 slots span 20 intervals (2.2 s)');

-- ---- a rate that had no calls for a while starts again at once, not in the past
update public.kie_rate set next_at = clock_timestamp() - interval '1 minute';
select is(public.kie_rate_acquire(), 0, 'after a quiet minute the next call goes at once');
select ok((select next_at from public.kie_rate) between clock_timestamp() + interval '90 milliseconds' and clock_timestamp() + interval '110 milliseconds',
  '… and the one after it an interval from now (quiet time is not saved up as a burst)');

-- ---- the row lost (an UNLOGGED table after a crash)
delete from public.kie_rate;
select is(public.kie_rate_acquire(), 0, 'without its row the rate starts again');
select is((select count(*)::int from public.kie_rate), 1, '… and the row is back');

-- ---- who may take a slot
select tests.create_user('kie-rate@example.test', '21212121-0000-4000-8000-000000000001') is not null as created \gset
select tests.authenticate_as_anon();
select throws_ok($$select public.kie_rate_acquire()$$, '42501', null, 'anon cannot take a slot');
select tests.authenticate_as('21212121-0000-4000-8000-000000000001');
select throws_ok($$select public.kie_rate_acquire()$$, '42501', null, 'authenticated cannot take a slot');
select tests.authenticate_as_service_role();
select ok(public.kie_rate_acquire() >= 0, 'the service role can');
select tests.clear_authentication();
select ok(not (has_table_privilege('anon', 'public.kie_rate', 'select') or has_table_privilege('authenticated', 'public.kie_rate', 'select')
               or has_table_privilege('anon', 'public.kie_rate', 'update') or has_table_privilege('authenticated', 'public.kie_rate', 'update')),
  'API roles cannot read or write the rate''s row');
select ok((select prosecdef and proconfig = array['search_path=""'] from pg_proc
            where oid = 'public.kie_rate_acquire(int)'::regprocedure),
  'kie_rate_acquire is SECURITY DEFINER with an empty search_path');

select * from finish();
rollback;
