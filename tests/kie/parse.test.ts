import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { detectCallbackFamily, extractTaskId, familyForModel, KieApiError, type KieFamily, KieParseError, type KieResult, parseKieCallback, parseRecordInfo } from '../../shared/kie/parse.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const localDir = join(repoRoot, 'tests/fixtures/kie-payloads');
const sharedDir = resolve(repoRoot, '../shared/kie-payloads');

type Expectation = Omit<KieResult, 'complete'> & { complete?: boolean };

/** What every payload of KIE's docs must parse to. */
const CALLBACKS: Record<string, Expectation> = {
  '4o-fail.json': {
    taskId: 'task12345',
    family: '4o',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error:
      'Generation failed: Your content was flagged by OpenAI as violating content policies (code 400)',
  },
  '4o-success.json': {
    taskId: 'task12345',
    family: '4o',
    state: 'success',
    resultUrls: ['https://example.com/result/image1.png'],
    coverUrls: [],
    error: null,
  },
  'flux-kontext-fail.json': {
    taskId: 'task12345',
    family: 'flux-kontext',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error: 'Generation failed: Image generation task failed (code 501)',
  },
  'flux-kontext-success.json': {
    taskId: 'task12345',
    family: 'flux-kontext',
    state: 'success',
    resultUrls: ['https://example.com/result.jpg'],
    coverUrls: [],
    error: null,
  },
  'market-fail.json': {
    taskId: 'bd3a37c523149e4adf45a3ddb5faf1a8',
    family: 'market',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error: 'Generation failed: Internal server error (code 500)',
  },
  'market-success.json': {
    taskId: 'e989621f54392584b05867f87b160672',
    family: 'market',
    state: 'success',
    resultUrls: ['https://example.com/generated-image.jpg'],
    coverUrls: [],
    error: null,
  },
  'mj-fail.json': {
    taskId: 'mj_task_12345',
    family: 'mj',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error: 'Generation failed: Image generation failed (code 500)',
  },
  'mj-success.json': {
    taskId: 'mj_task_12345',
    family: 'mj',
    state: 'success',
    resultUrls: [1, 2, 3, 4].map((i) => `https://example.com/mj_result${i}.png`),
    coverUrls: [],
    error: null,
  },
  'runway-fail.json': {
    taskId: 'ee603959-debb-48d1-98c4-a6d1c717eba6',
    family: 'runway',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error:
      'Generation failed: Inappropriate content detected. Please replace the image or video. (code 400)',
  },
  'runway-success.json': {
    taskId: 'ee603959-debb-48d1-98c4-a6d1c717eba6',
    family: 'runway',
    state: 'success',
    resultUrls: ['https://file.com/k/xxxxxxx.mp4'],
    coverUrls: ['https://file.com/m/xxxxxxxx.png'],
    error: null,
  },
  'veo-fail.json': {
    taskId: 'veo_task_abcdef123456',
    family: 'veo',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error:
      'Generation failed: Your prompt was flagged by Website as violating content policies. (code 400)',
  },
  'veo-success.json': {
    taskId: 'veo_task_abcdef123456',
    family: 'veo',
    state: 'success',
    resultUrls: ['http://example.com/video1.mp4'],
    coverUrls: [],
    error: null,
  },
  // KIE's example has two tracks with the same (masked) URLs: one URL each after de-duplication
  'suno-success.json': {
    taskId: '2fac****9f72',
    family: 'suno',
    state: 'success',
    resultUrls: ['https://example.cn/****.mp3'],
    coverUrls: ['https://example.cn/****.jpeg'],
    error: null,
  },
  'suno-fail.json': {
    taskId: '2fac****9f72',
    family: 'suno',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error: 'Generation failed: Audio generation failed (code 501)',
  },
  // progress callbacks: not final, even with a track's URL in them (complete: true = no need to
  // ask record-info, the task is known to be running)
  'suno-text.json': {
    taskId: '2fac****9f72',
    family: 'suno',
    state: 'pending',
    resultUrls: [],
    coverUrls: [],
    error: null,
  },
  'suno-first.json': {
    taskId: '2fac****9f72',
    family: 'suno',
    state: 'pending',
    resultUrls: [],
    coverUrls: [],
    error: null,
  },
};

const RECORD_INFO: Record<string, Expectation> = {
  '4o-success.json': {
    taskId: 'task12345',
    family: '4o',
    state: 'success',
    resultUrls: ['https://example.com/result/image1.png'],
    coverUrls: [],
    error: null,
  },
  'flux-kontext-success.json': {
    taskId: 'task12345',
    family: 'flux-kontext',
    state: 'success',
    resultUrls: ['https://example.com/result.jpg'],
    coverUrls: [],
    error: null,
  },
  'market-generating.json': {
    taskId: 'task_12345678',
    family: 'market',
    state: 'pending',
    resultUrls: [],
    coverUrls: [],
    error: null,
  },
  'market-success.json': {
    taskId: 'task_12345678',
    family: 'market',
    state: 'success',
    resultUrls: ['https://example.com/generated-content.jpg'],
    coverUrls: [],
    error: null,
  },
  'runway-success.json': {
    taskId: 'ee603959-debb-48d1-98c4-a6d1c717eba6',
    family: 'runway',
    state: 'success',
    resultUrls: ['https://file.com/k/xxxxxxx.mp4'],
    coverUrls: ['https://file.com/m/xxxxxxxx.png'],
    error: null,
  },
  'veo-success.json': {
    taskId: 'veo_task_abcdef123456',
    family: 'veo',
    state: 'success',
    resultUrls: ['http://example.com/video1.mp4'],
    coverUrls: [],
    error: null,
  },
  'suno-success.json': {
    taskId: '5c79****be8e',
    family: 'suno',
    state: 'success',
    resultUrls: ['https://example.cn/****.mp3'],
    coverUrls: ['https://example.cn/****.jpeg'],
    error: null,
  },
  'suno-generating.json': {
    taskId: '5c79****be8e',
    family: 'suno',
    state: 'pending',
    resultUrls: [],
    coverUrls: [],
    error: null,
  },
  'suno-fail.json': {
    taskId: '5c79****be8e',
    family: 'suno',
    state: 'failed',
    resultUrls: [],
    coverUrls: [],
    error: 'Generation failed: 生成失败,请重试或联系客服 (code 501)',
  },
};

function familyOfFile(name: string): KieFamily {
  const fam = ['flux-kontext', 'market', '4o', 'veo', 'runway', 'mj', 'suno'].find((f) =>
    name.startsWith(`${f}-`)
  );
  if (!fam) throw new Error(`no family in file name ${name}`);
  return fam as KieFamily;
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

const sources = [{ label: 'tests/fixtures/kie-payloads', dir: localDir }];
if (existsSync(sharedDir)) sources.push({ label: '../shared/kie-payloads', dir: sharedDir });

for (const { label, dir } of sources) {
  // ../shared/kie-payloads is an older, read-only copy (no suno files): there, every file it has
  // must have an expectation; here, every expectation its file too.
  const isLocal = dir === localDir;
  const has = (sub: string, file: string) => isLocal || existsSync(join(dir, sub, file));
  describe(`KIE payloads from ${label}`, () => {
    it('has an expectation for every file (a new payload file must be added here)', () => {
      const cb = readdirSync(join(dir, 'callback')).filter((f) => f.endsWith('.json')).sort();
      const ri = readdirSync(join(dir, 'record-info')).filter((f) => f.endsWith('.json')).sort();
      if (isLocal) {
        expect(cb).toEqual(Object.keys(CALLBACKS).sort());
        expect(ri).toEqual(Object.keys(RECORD_INFO).sort());
      } else {
        expect(cb.filter((f) => !(f in CALLBACKS))).toEqual([]);
        expect(ri.filter((f) => !(f in RECORD_INFO))).toEqual([]);
      }
    });

    for (const [file, want] of Object.entries(CALLBACKS)) {
      if (!has('callback', file)) continue;
      it(`callback/${file} → ${want.family} ${want.state}`, () => {
        const body = readJson(join(dir, 'callback', file));
        const got = parseKieCallback(body);
        expect(got).toEqual({ ...want, complete: want.complete ?? true });
        expect(detectCallbackFamily(body)).toBe(want.family);
        expect(extractTaskId(body)).toBe(want.taskId);
      });
    }

    for (const [file, want] of Object.entries(RECORD_INFO)) {
      if (!has('record-info', file)) continue;
      it(`record-info/${file} → ${want.family} ${want.state}`, () => {
        const body = readJson(join(dir, 'record-info', file));
        const got = parseRecordInfo(familyOfFile(file), body);
        expect(got).toEqual({ ...want, complete: want.complete ?? true });
      });
    }
  });
}

if (existsSync(sharedDir)) {
  it('the committed copy of the payloads equals ../shared/kie-payloads', () => {
    for (const sub of ['callback', 'record-info']) {
      for (const f of readdirSync(join(sharedDir, sub))) {
        expect(readFileSync(join(localDir, sub, f), 'utf8'), `${sub}/${f}`).toBe(
          readFileSync(join(sharedDir, sub, f), 'utf8'),
        );
      }
    }
  });
}

describe('extractTaskId', () => {
  it('finds the id in camel or snake case, top level or in data', () => {
    expect(extractTaskId({ taskId: 'a' })).toBe('a');
    expect(extractTaskId({ task_id: 'b' })).toBe('b');
    expect(extractTaskId({ data: { taskId: 'c' } })).toBe('c');
    expect(extractTaskId({ data: { task_id: 'd' } })).toBe('d');
    expect(extractTaskId({ data: JSON.stringify({ taskId: 'e' }) })).toBe('e');
    expect(extractTaskId({ data: { taskId: '  ' } })).toBeNull();
    expect(extractTaskId({ data: {} })).toBeNull();
    expect(extractTaskId(null)).toBeNull();
    expect(extractTaskId('taskId')).toBeNull();
    expect(extractTaskId([{ taskId: 'x' }])).toBeNull();
  });
});

describe('parseKieCallback: defensive parsing', () => {
  it('rejects bodies that are not objects or have no task id with KieParseError', () => {
    expect(() => parseKieCallback(null)).toThrow(KieParseError);
    expect(() => parseKieCallback('x')).toThrow(KieParseError);
    expect(() => parseKieCallback([1])).toThrow(KieParseError);
    expect(() => parseKieCallback({ code: 200, data: { info: {} } })).toThrow(/no task id/);
  });

  it('reads runway ids in camel case as well', () => {
    const r = parseKieCallback({
      code: 200,
      msg: 'ok',
      data: { taskId: 'r1', videoUrl: 'https://x.test/v.mp4', imageUrl: 'https://x.test/c.png' },
    });
    expect(r).toMatchObject({ taskId: 'r1', family: 'runway', state: 'success' });
    expect(r.resultUrls).toEqual(['https://x.test/v.mp4']);
    expect(r.coverUrls).toEqual(['https://x.test/c.png']);
  });

  it('accepts arrays sent as JSON strings', () => {
    const fourO = parseKieCallback({
      code: 200,
      data: {
        taskId: 't',
        info: { result_urls: '["https://x.test/a.png","https://x.test/b.png"]' },
      },
    });
    expect(fourO.family).toBe('4o');
    expect(fourO.resultUrls).toEqual(['https://x.test/a.png', 'https://x.test/b.png']);

    const veo = parseKieCallback({
      code: 200,
      data: {
        taskId: 'v',
        info: JSON.stringify({
          resultUrls: JSON.stringify(['https://x.test/v.mp4']),
          imageUrls: ['https://x.test/p.jpg'],
        }),
        fallbackFlag: false,
      },
    });
    expect(veo).toMatchObject({ family: 'veo', state: 'success', complete: true });
    expect(veo.resultUrls).toEqual(['https://x.test/v.mp4']);
    expect(veo.coverUrls).toEqual(['https://x.test/p.jpg']);

    const mj = parseKieCallback({
      code: 200,
      data: { taskId: 'm', promptJson: '{}', resultUrls: '["https://x.test/1.png"]' },
    });
    expect(mj.resultUrls).toEqual(['https://x.test/1.png']);

    const market = parseKieCallback({
      code: 200,
      data: {
        taskId: 'k',
        state: 'success',
        resultJson: { resultUrls: '["https://x.test/m.png"]' },
      },
    });
    expect(market.resultUrls).toEqual(['https://x.test/m.png']);
  });

  it('treats a failed state inside an HTTP-200-style envelope (code 200) as failure', () => {
    const r = parseKieCallback({
      code: 200,
      msg: 'success',
      data: { taskId: 'k', state: 'fail', failCode: '422', failMsg: 'NSFW input', resultJson: '' },
    });
    expect(r).toMatchObject({
      state: 'failed',
      error: 'Generation failed: NSFW input (code 422)',
      complete: true,
    });
  });

  it('gives a readable default when a failure has no message', () => {
    const r = parseKieCallback({ code: 501, data: { taskId: 't', info: { resultImageUrl: '' } } });
    expect(r).toMatchObject({
      family: 'flux-kontext',
      state: 'failed',
      error: 'Generation failed: KIE reported a failure without a message (code 501)',
    });
    const r2 = parseKieCallback({
      code: 500,
      message: '',
      data: { taskId: 't', fallbackFlag: false },
    });
    expect(r2.error).toBe('Generation failed: KIE reported a failure without a message (code 500)');
  });

  it('reads `message` when `msg` is absent', () => {
    const r = parseKieCallback({
      code: 400,
      message: 'Bad prompt',
      data: { taskId: 't', info: null },
    });
    expect(r.error).toBe('Generation failed: Bad prompt (code 400)');
  });

  it('is incomplete when success is claimed without a usable URL', () => {
    const noUrl = parseKieCallback({
      code: 200,
      msg: 'ok',
      data: { taskId: 't', info: { result_urls: [] } },
    });
    expect(noUrl).toMatchObject({ state: 'success', complete: false, resultUrls: [] });
    const relative = parseKieCallback({
      code: 200,
      data: { taskId: 't', info: { result_urls: ['/a.png', 'ftp://x/a.png'] } },
    });
    expect(relative).toMatchObject({ state: 'success', complete: false, resultUrls: [] });
  });

  it('is incomplete when the state is unknown or the shape unrecognised', () => {
    const unknownState = parseKieCallback({
      code: 200,
      data: { taskId: 't', state: 'thinking', resultJson: '' },
    });
    expect(unknownState).toMatchObject({ state: 'pending', complete: false });
    const noCode = parseKieCallback({ data: { taskId: 't', info: {} } });
    expect(noCode).toMatchObject({ state: 'pending', complete: false });
    const bare = parseKieCallback({ code: 200, data: { taskId: 't' } });
    expect(bare).toMatchObject({ family: 'market', complete: false });
    const hinted = parseKieCallback({ code: 200, data: { taskId: 't' } }, { family: 'veo' });
    expect(hinted).toMatchObject({ family: 'veo', state: 'success', complete: false });
  });

  it('market waiting/queuing/generating is pending', () => {
    for (const s of ['waiting', 'queuing', 'generating']) {
      expect(parseKieCallback({ code: 200, data: { taskId: 't', state: s, resultJson: '' } }))
        .toMatchObject({
          state: 'pending',
          complete: true,
        });
    }
  });

  it('drops duplicate URLs and keeps order', () => {
    const r = parseKieCallback({
      code: 200,
      data: {
        taskId: 't',
        promptJson: '{}',
        resultUrls: ['https://x.test/2.png', 'https://x.test/1.png', 'https://x.test/2.png'],
      },
    });
    expect(r.resultUrls).toEqual(['https://x.test/2.png', 'https://x.test/1.png']);
  });
});

describe('parseRecordInfo: family states', () => {
  it('4o status values', () => {
    const base = { taskId: 't', response: { resultUrls: ['https://x.test/a.png'] } };
    expect(
      parseRecordInfo('4o', { code: 200, data: { ...base, status: 'SUCCESS', successFlag: 1 } })
        .state,
    ).toBe('success');
    expect(
      parseRecordInfo('4o', {
        code: 200,
        data: { taskId: 't', status: 'GENERATING', response: null },
      }),
    ).toMatchObject({
      state: 'pending',
      complete: true,
    });
    for (const s of ['CREATE_TASK_FAILED', 'GENERATE_FAILED']) {
      const r = parseRecordInfo('4o', {
        code: 200,
        data: { taskId: 't', status: s, errorCode: 400, errorMessage: 'flagged' },
      });
      expect(r).toMatchObject({ state: 'failed', error: 'Generation failed: flagged (code 400)' });
    }
  });

  it('successFlag 0/1/2/3 for flux-kontext, veo and mj', () => {
    const resp = {
      'flux-kontext': { response: { resultImageUrl: 'https://x.test/r.jpg' } },
      veo: { response: { resultUrls: ['https://x.test/v.mp4'] } },
      mj: {
        resultInfoJson: {
          resultUrls: [{ resultUrl: 'https://x.test/1.png' }, {
            resultUrl: 'https://x.test/2.png',
          }],
        },
      },
    } as const;
    for (const fam of ['flux-kontext', 'veo', 'mj'] as const) {
      expect(parseRecordInfo(fam, { code: 200, data: { taskId: 't', successFlag: 0 } }))
        .toMatchObject({
          state: 'pending',
          complete: true,
        });
      const ok = parseRecordInfo(fam, {
        code: 200,
        data: { taskId: 't', successFlag: 1, ...resp[fam] },
      });
      expect(ok).toMatchObject({ state: 'success', complete: true });
      expect(ok.resultUrls.length).toBeGreaterThan(0);
      for (const flag of [2, 3, '3']) {
        const bad = parseRecordInfo(fam, {
          code: 200,
          data: { taskId: 't', successFlag: flag, errorMessage: 'boom', errorCode: 500 },
        });
        expect(bad).toMatchObject({ state: 'failed', error: 'Generation failed: boom (code 500)' });
      }
      expect(parseRecordInfo(fam, { code: 200, data: { taskId: 't', successFlag: 9 } }))
        .toMatchObject({
          state: 'pending',
          complete: false,
        });
    }
    const mj = parseRecordInfo('mj', {
      code: 200,
      data: { taskId: 't', successFlag: 1, resultInfoJson: JSON.stringify(resp.mj.resultInfoJson) },
    });
    expect(mj.resultUrls).toEqual(['https://x.test/1.png', 'https://x.test/2.png']);
  });

  it('runway state values', () => {
    for (const s of ['wait', 'queueing', 'generating']) {
      expect(
        parseRecordInfo('runway', { code: 200, data: { taskId: 't', state: s, videoInfo: null } })
          .state,
      ).toBe('pending');
    }
    const fail = parseRecordInfo('runway', {
      code: 200,
      data: { taskId: 't', state: 'fail', failCode: '400', failMsg: 'nope' },
    });
    expect(fail).toMatchObject({ state: 'failed', error: 'Generation failed: nope (code 400)' });
  });

  it('market fail has the message of failMsg', () => {
    const r = parseRecordInfo('market', {
      code: 200,
      message: 'success',
      data: {
        taskId: 't',
        state: 'fail',
        resultJson: '',
        failCode: '500',
        failMsg: 'Internal server error',
      },
    });
    expect(r).toMatchObject({
      state: 'failed',
      error: 'Generation failed: Internal server error (code 500)',
    });
  });

  it('an envelope error throws KieApiError naming the code; no data throws KieParseError', () => {
    expect(() => parseRecordInfo('market', { code: 404, msg: 'Task not found', data: null }))
      .toThrow(KieApiError);
    expect(() => parseRecordInfo('market', { code: 404, msg: 'Task not found', data: null }))
      .toThrow(
        /code 404: Task not found/,
      );
    expect(() => parseRecordInfo('market', { code: 200, msg: 'success', data: null })).toThrow(
      KieParseError,
    );
  });

  it('uses the requested task id when the answer has none', () => {
    const r = parseRecordInfo('veo', { code: 200, data: { successFlag: 0 } }, 'given');
    expect(r.taskId).toBe('given');
  });
});

describe('familyForModel', () => {
  it.each(
    [
      ['gpt4o-image', '4o'],
      ['4o-image', '4o'],
      ['flux-kontext-pro', 'flux-kontext'],
      ['flux-kontext-max', 'flux-kontext'],
      ['veo3', 'veo'],
      ['veo3_fast', 'veo'],
      ['runway-duration-5-generate', 'runway'],
      ['mj_txt2img', 'mj'],
      ['midjourney', 'mj'],
      ['google/nano-banana', 'market'],
      ['flux-2/pro-text-to-image', 'market'],
      ['gpt-image-1.5/text-to-image', 'market'],
      ['', 'market'],
      [null, 'market'],
      [undefined, 'market'],
      // suno: KIE's model versions, the names apps store (the first user's table), Suno's own
      ['V3_5', 'suno'],
      ['V4', 'suno'],
      ['V4_5', 'suno'],
      ['V4_5PLUS', 'suno'],
      ['V4_5ALL', 'suno'],
      ['V5', 'suno'],
      [' v4.5 ', 'suno'],
      ['suno-v4', 'suno'],
      ['suno-v3.5', 'suno'],
      ['suno_v4_5', 'suno'],
      ['suno/v5', 'suno'],
      ['Suno V4.5', 'suno'],
      ['chirp-v3-5', 'suno'],
      ['veo-3.1-fast', 'veo'],
      ['kling-2.6/text-to-video', 'market'],
      ['nano-banana', 'market'],
      ['vidu', 'market'],
      ['v', 'market'],
    ] as const,
  )('%s → %s', (model, fam) => {
    expect(familyForModel(model)).toBe(fam);
  });
});

describe('suno (music): callbacks', () => {
  const track = (n: number, extra: Record<string, unknown> = {}) => ({
    id: `id-${n}`,
    audio_url: `https://x.test/${n}.mp3`,
    stream_audio_url: `https://x.test/stream/${n}`,
    image_url: `https://x.test/${n}.jpeg`,
    title: `Take ${n}`,
    duration: 100 + n,
    ...extra,
  });
  const cb = (callbackType: string, data: unknown, code = 200, msg = 'ok') => ({
    code,
    msg,
    data: { callbackType, task_id: 's1', data },
  });

  it('complete: every track, in order, audio as results and images as covers', () => {
    const r = parseKieCallback(cb('complete', [track(2), track(1)]));
    expect(r).toEqual({
      taskId: 's1',
      family: 'suno',
      state: 'success',
      resultUrls: ['https://x.test/2.mp3', 'https://x.test/1.mp3'],
      coverUrls: ['https://x.test/2.jpeg', 'https://x.test/1.jpeg'],
      error: null,
      complete: true,
    });
  });

  it('never takes the stream URL as the file; source_audio_url when audio_url is missing', () => {
    const r = parseKieCallback(
      cb('complete', [
        track(1, { audio_url: '' }),
        track(2, { audio_url: null, source_audio_url: 'https://x.test/src-2.mp3' }),
        track(3, { image_url: '', source_image_url: 'https://x.test/src-3.jpeg' }),
      ]),
    );
    expect(r.resultUrls).toEqual(['https://x.test/src-2.mp3', 'https://x.test/3.mp3']);
    expect(r.coverUrls).toEqual([
      'https://x.test/1.jpeg',
      'https://x.test/2.jpeg',
      'https://x.test/src-3.jpeg',
    ]);
    expect(r).toMatchObject({ state: 'success', complete: true });
  });

  it('text and first are progress: pending, no URLs, nothing to ask record-info', () => {
    for (const type of ['text', 'first', 'TEXT', 'First']) {
      expect(parseKieCallback(cb(type, type.toLowerCase() === 'first' ? [track(1)] : [])))
        .toEqual({
          taskId: 's1',
          family: 'suno',
          state: 'pending',
          resultUrls: [],
          coverUrls: [],
          error: null,
          complete: true,
        });
    }
  });

  it('a progress callback whose code says failure is a failure', () => {
    expect(parseKieCallback(cb('text', [], 531, 'Sorry, the generation failed. Credits refunded')))
      .toMatchObject({
        state: 'failed',
        error: 'Generation failed: Sorry, the generation failed. Credits refunded (code 531)',
        complete: true,
      });
    expect(parseKieCallback(cb('first', [track(1)], 400, 'Lyrics contained copyrighted material')))
      .toMatchObject({ state: 'failed', resultUrls: [], coverUrls: [] });
    // and so is `complete` with a failure code (URLs or not)
    expect(parseKieCallback(cb('complete', [track(1)], 413, 'Matches existing work')))
      .toMatchObject({
        state: 'failed',
        error: 'Generation failed: Matches existing work (code 413)',
      });
  });

  it('error: the message of the envelope, of data.error, or a readable default', () => {
    expect(parseKieCallback(cb('error', null, 501, 'Audio generation failed.')).error).toBe(
      'Generation failed: Audio generation failed. (code 501)',
    );
    expect(
      parseKieCallback({
        code: 501,
        msg: 'Audio generation failed.',
        data: { callbackType: 'error', task_id: 's1', error: 'Technical issues' },
      }).error,
    ).toBe('Generation failed: Technical issues (code 501)');
    expect(parseKieCallback(cb('error', [], 200, 'success'))).toMatchObject({
      state: 'failed',
      error: 'Generation failed: KIE reported a failure without a message',
    });
  });

  it('complete without any usable audio URL, or an unknown stage: ask record-info', () => {
    expect(parseKieCallback(cb('complete', [track(1, { audio_url: '/a.mp3' })])))
      .toMatchObject({ state: 'success', complete: false, resultUrls: [] });
    expect(parseKieCallback(cb('complete', null))).toMatchObject({
      state: 'success',
      complete: false,
    });
    expect(parseKieCallback(cb('streaming', [track(1)]))).toMatchObject({
      family: 'suno',
      state: 'pending',
      complete: false,
    });
  });

  it('reads tracks sent as a JSON string, camel case, and the task id in camel case', () => {
    const r = parseKieCallback({
      code: 200,
      data: {
        callbackType: 'complete',
        taskId: 's2',
        data: JSON.stringify([{ audioUrl: 'https://x.test/a.mp3', imageUrl: 'https://x.test/a.jpeg' }]),
      },
    });
    expect(r).toMatchObject({
      taskId: 's2',
      family: 'suno',
      state: 'success',
      resultUrls: ['https://x.test/a.mp3'],
      coverUrls: ['https://x.test/a.jpeg'],
      complete: true,
    });
  });

  it('a row whose model is a suno one makes a bare callback suno', () => {
    const r = parseKieCallback(
      { code: 200, data: { task_id: 's3', data: [track(1)] } },
      { family: familyForModel('suno-v4') },
    );
    expect(r).toMatchObject({
      family: 'suno',
      state: 'success',
      resultUrls: ['https://x.test/1.mp3'],
      complete: true,
    });
  });
});

describe('suno (music): record-info', () => {
  const sunoData = [
    { audioUrl: 'https://x.test/1.mp3', streamAudioUrl: 'https://x.test/s1', imageUrl: 'https://x.test/1.jpeg' },
    { audioUrl: 'https://x.test/2.mp3', streamAudioUrl: 'https://x.test/s2', imageUrl: 'https://x.test/2.jpeg' },
  ];
  const info = (data: Record<string, unknown>) =>
    parseRecordInfo('suno', { code: 200, msg: 'success', data: { taskId: 't', ...data } });

  it('SUCCESS: the tracks of response.sunoData', () => {
    expect(info({ status: 'SUCCESS', response: { taskId: 't', sunoData } })).toEqual({
      taskId: 't',
      family: 'suno',
      state: 'success',
      resultUrls: ['https://x.test/1.mp3', 'https://x.test/2.mp3'],
      coverUrls: ['https://x.test/1.jpeg', 'https://x.test/2.jpeg'],
      error: null,
      complete: true,
    });
  });

  it('PENDING, TEXT_SUCCESS and FIRST_SUCCESS are pending', () => {
    for (const status of ['PENDING', 'TEXT_SUCCESS', 'FIRST_SUCCESS']) {
      expect(info({ status, response: { taskId: 't', sunoData } })).toMatchObject({
        state: 'pending',
        resultUrls: [],
        complete: true,
      });
    }
    expect(info({ status: 'PENDING', response: null })).toMatchObject({ state: 'pending' });
  });

  it('failures: the message and code of the answer, else what KIE says the status means', () => {
    expect(
      info({
        status: 'GENERATE_AUDIO_FAILED',
        errorCode: 501,
        errorMessage: 'Internal Error, Please try again later.',
        response: { taskId: 't', sunoData: [] },
      }),
    ).toMatchObject({
      state: 'failed',
      error: 'Generation failed: Internal Error, Please try again later. (code 501)',
    });
    expect(info({ status: 'SENSITIVE_WORD_ERROR', errorCode: null, errorMessage: null }))
      .toMatchObject({
        state: 'failed',
        error: 'Generation failed: Content filtered due to sensitive words',
      });
    expect(info({ status: 'CREATE_TASK_FAILED' }).error).toBe(
      'Generation failed: Failed to create task',
    );
    expect(
      info({
        status: 'GENERATE_AUDIO_FAILED',
        response: { taskId: 't', sunoData: [], errorMessage: 'from response' },
      }).error,
    ).toBe('Generation failed: from response');
  });

  it('CALLBACK_EXCEPTION: success when every track has its audio, else failed', () => {
    expect(info({ status: 'CALLBACK_EXCEPTION', response: { sunoData } })).toMatchObject({
      state: 'success',
      resultUrls: ['https://x.test/1.mp3', 'https://x.test/2.mp3'],
      complete: true,
    });
    expect(
      info({ status: 'CALLBACK_EXCEPTION', response: { sunoData: [{ ...sunoData[0], audioUrl: '' }] } }),
    ).toMatchObject({ state: 'failed', error: 'Generation failed: Error during callback process' });
  });

  it('an unknown status leaves the task undecided', () => {
    expect(info({ status: 'MIXING', response: { sunoData } })).toMatchObject({
      state: 'pending',
      complete: false,
    });
  });

  it('detectCallbackFamily knows a record-info-shaped body as suno', () => {
    expect(detectCallbackFamily({ code: 200, data: { taskId: 't', response: { sunoData } } }))
      .toBe('suno');
  });
});
