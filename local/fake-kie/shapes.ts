/**
 * KIE's documented payloads, per family: the callback body and the record-info answer of a task
 * (success and failure), with each family's messages and failure codes.
 */
import type { KieFamily } from '../../shared/kie/parse.ts';
import { coverUrls, currentState, type FakeKieState, resultUrls, type Task } from './task.ts';

const DEFAULT_FAIL: Record<KieFamily, { code: number; msg: string }> = {
  market: { code: 501, msg: 'Internal server error' },
  '4o': { code: 400, msg: 'Your content was flagged by OpenAI as violating content policies' },
  'flux-kontext': { code: 501, msg: 'Image generation task failed' },
  veo: { code: 400, msg: 'Your prompt was flagged by Website as violating content policies.' },
  runway: { code: 400, msg: 'Inappropriate content detected. Please replace the image or video.' },
  mj: { code: 500, msg: 'Image generation failed' },
  suno: { code: 501, msg: 'Audio generation failed' },
};

const SUCCESS_MSG: Record<KieFamily, string> = {
  market: 'Playground task completed successfully.',
  '4o': 'success',
  'flux-kontext': 'BFL image generated successfully.',
  veo: 'Veo3.1 video generated successfully.',
  runway: 'All generated successfully.',
  mj: 'success',
  suno: 'All generated successfully.',
};

const failOf = (t: Task) => ({
  code: DEFAULT_FAIL[t.family].code,
  msg: t.fake.failMsg ?? DEFAULT_FAIL[t.family].msg,
});

const paramJson = (t: Task) => JSON.stringify(t.request);

/** KIE's time format in suno payloads: `2025-01-01 00:00:00`. */
const sunoTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

/**
 * A suno task's tracks (one per fixture, each with the cover), in the callback's snake case
 * (`camel`: record-info's camel case). `audio` says which tracks have their file yet: KIE fills
 * audioUrl as each track finishes. The fake does not measure the audio: `duration` is the
 * request's `duration` when it is a number, else 120.
 */
function sunoTracks(
  s: FakeKieState,
  t: Task,
  o: { camel: boolean; audio: 'all' | 'first' | 'none' },
): Record<string, unknown>[] {
  const covers = coverUrls(s, t);
  const model = `chirp-${t.model.toLowerCase().replace(/_/g, '-')}`;
  return resultUrls(s, t).map((url, i) => {
    const audio = o.audio === 'all' || (o.audio === 'first' && i === 0) ? url : '';
    const track = {
      id: `${t.taskId}-${i + 1}`,
      audioUrl: audio,
      streamAudioUrl: `${url}?stream=1`,
      imageUrl: covers[0] ?? '',
      prompt: typeof t.request.prompt === 'string' ? t.request.prompt : '',
      modelName: model,
      title: typeof t.request.title === 'string' ? t.request.title : 'Fake KIE track',
      tags: typeof t.request.style === 'string' ? t.request.style : '',
      createTime: sunoTime(t.createdAt),
      duration: typeof t.request.duration === 'number' ? t.request.duration : 120,
    };
    if (o.camel) return track;
    return {
      id: track.id,
      audio_url: track.audioUrl,
      stream_audio_url: track.streamAudioUrl,
      image_url: track.imageUrl,
      prompt: track.prompt,
      model_name: track.modelName,
      title: track.title,
      tags: track.tags,
      createTime: track.createTime,
      duration: track.duration,
    };
  });
}

/** A suno callback: a progress stage while the task runs (t.stage), else complete or error. */
function sunoCallback(s: FakeKieState, t: Task): Record<string, unknown> {
  const task_id = t.taskId;
  if (t.completedAt === null && t.stage === 'text') {
    return {
      code: 200,
      msg: 'Text generation completed.',
      data: { callbackType: 'text', task_id, data: [] },
    };
  }
  if (t.completedAt === null && t.stage === 'first') {
    return {
      code: 200,
      msg: 'First track generated successfully.',
      data: {
        callbackType: 'first',
        task_id,
        data: sunoTracks(s, t, { camel: false, audio: 'first' }).slice(0, 1),
      },
    };
  }
  if (t.fake.state !== 'success') {
    const { code, msg } = failOf(t);
    return { code, msg, data: { callbackType: 'error', task_id, data: null } };
  }
  return {
    code: 200,
    msg: SUCCESS_MSG.suno,
    data: {
      callbackType: 'complete',
      task_id,
      data: sunoTracks(s, t, { camel: false, audio: 'all' }),
    },
  };
}

export function callbackBody(s: FakeKieState, t: Task): Record<string, unknown> {
  const ok = t.fake.state === 'success';
  const urls = resultUrls(s, t);
  const covers = coverUrls(s, t);
  const { code, msg } = failOf(t);
  switch (t.family) {
    case 'market': {
      const base = {
        completeTime: t.completedAt ?? Date.now(),
        consumeCredits: ok ? 100 : 0,
        costTime: Math.round(((t.completedAt ?? Date.now()) - t.createdAt) / 1000),
        createTime: t.createdAt,
        model: t.model,
        param: paramJson(t),
        remainedCredits: 2510330,
        taskId: t.taskId,
        updateTime: t.completedAt ?? Date.now(),
      };
      return ok
        ? {
          code: 200,
          msg: SUCCESS_MSG.market,
          data: { ...base, resultJson: JSON.stringify({ resultUrls: urls }), state: 'success' },
        }
        : {
          code: 501,
          msg: 'Playground task failed.',
          data: { ...base, failCode: '500', failMsg: msg, state: 'fail' },
        };
    }
    case '4o':
      return ok
        ? {
          code: 200,
          msg: SUCCESS_MSG['4o'],
          data: { taskId: t.taskId, info: { result_urls: urls } },
        }
        : { code, msg, data: { taskId: t.taskId, info: null } };
    case 'flux-kontext':
      return ok
        ? {
          code: 200,
          msg: SUCCESS_MSG['flux-kontext'],
          data: {
            taskId: t.taskId,
            info: { originImageUrl: urls[0] ?? '', resultImageUrl: urls[0] ?? '' },
          },
        }
        : {
          code,
          msg,
          data: { taskId: t.taskId, info: { originImageUrl: '', resultImageUrl: '' } },
        };
    case 'veo': {
      if (!ok) return { code, msg, data: { taskId: t.taskId, fallbackFlag: false } };
      const info: Record<string, unknown> = {
        resultUrls: urls,
        originUrls: urls,
        resolution: '1080p',
      };
      if (covers.length) info.imageUrls = covers;
      return {
        code: 200,
        msg: SUCCESS_MSG.veo,
        data: { taskId: t.taskId, info, fallbackFlag: false },
      };
    }
    case 'runway':
      return ok
        ? {
          code: 200,
          msg: SUCCESS_MSG.runway,
          data: {
            task_id: t.taskId,
            video_id: `video-${t.taskId}`,
            video_url: urls[0] ?? '',
            image_url: covers[0] ?? '',
          },
        }
        : { code, msg, data: { task_id: t.taskId, video_id: '', video_url: '', image_url: '' } };
    case 'mj':
      return ok
        ? {
          code: 200,
          msg: SUCCESS_MSG.mj,
          data: { taskId: t.taskId, promptJson: paramJson(t), resultUrls: urls },
        }
        : { code, msg, data: { taskId: t.taskId, promptJson: paramJson(t), resultUrls: [] } };
    case 'suno':
      return sunoCallback(s, t);
  }
}

export function recordInfoBody(s: FakeKieState, t: Task): Record<string, unknown> {
  const st = currentState(t);
  const urls = resultUrls(s, t);
  const covers = coverUrls(s, t);
  const { code, msg } = failOf(t);
  const done = st !== 'pending';
  const completeTime = done ? (t.completedAt ?? Date.now()) : null;
  const flag = st === 'pending' ? 0 : st === 'success' ? 1 : 3;
  const envelope = (data: Record<string, unknown>) => ({ code: 200, msg: 'success', data });
  switch (t.family) {
    case 'market':
      return {
        code: 200,
        message: 'success',
        data: {
          taskId: t.taskId,
          model: t.model,
          state: st === 'pending' ? 'generating' : st,
          param: paramJson(t),
          resultJson: st === 'success' ? JSON.stringify({ resultUrls: urls }) : '',
          failCode: st === 'fail' ? '500' : '',
          failMsg: st === 'fail' ? msg : '',
          ...(done ? { completeTime } : {}),
          createTime: t.createdAt,
          updateTime: t.completedAt ?? t.createdAt,
        },
      };
    case '4o':
      return envelope({
        taskId: t.taskId,
        paramJson: paramJson(t),
        completeTime,
        response: st === 'success' ? { resultUrls: urls } : null,
        successFlag: st === 'pending' ? 0 : st === 'success' ? 1 : 2,
        status: st === 'pending' ? 'GENERATING' : st === 'success' ? 'SUCCESS' : 'GENERATE_FAILED',
        errorCode: st === 'fail' ? code : null,
        errorMessage: st === 'fail' ? msg : '',
        createTime: t.createdAt,
        progress: st === 'pending' ? '0.50' : '1.00',
      });
    case 'flux-kontext':
      return envelope({
        taskId: t.taskId,
        paramJson: paramJson(t),
        completeTime: completeTime === null ? null : new Date(completeTime).toISOString(),
        response: st === 'success'
          ? { originImageUrl: urls[0] ?? '', resultImageUrl: urls[0] ?? '' }
          : null,
        successFlag: flag,
        errorCode: st === 'fail' ? code : null,
        errorMessage: st === 'fail' ? msg : '',
        createTime: new Date(t.createdAt).toISOString(),
      });
    case 'veo': {
      const response: Record<string, unknown> | null = st === 'success'
        ? { taskId: t.taskId, resultUrls: urls, originUrls: urls, resolution: '1080p' }
        : null;
      if (response && covers.length) response.imageUrls = covers;
      return envelope({
        taskId: t.taskId,
        paramJson: paramJson(t),
        completeTime,
        response,
        successFlag: flag,
        errorCode: st === 'fail' ? code : null,
        errorMessage: st === 'fail' ? msg : '',
        createTime: t.createdAt,
        fallbackFlag: false,
      });
    }
    case 'runway':
      return envelope({
        taskId: t.taskId,
        parentTaskId: '',
        generateParam: {
          prompt: t.request.prompt ?? '',
          imageUrl: t.request.imageUrl ?? '',
          expandPrompt: true,
        },
        state: st === 'pending' ? 'generating' : st,
        generateTime: new Date(t.completedAt ?? t.createdAt).toISOString().replace('T', ' ')
          .slice(0, 19),
        videoInfo: st === 'success'
          ? {
            videoId: `video-${t.taskId}`,
            taskId: t.taskId,
            videoUrl: urls[0] ?? '',
            imageUrl: covers[0] ?? '',
          }
          : null,
        failCode: st === 'fail' ? String(code) : '',
        failMsg: st === 'fail' ? msg : '',
        expireFlag: 0,
      });
    case 'mj':
      return envelope({
        taskId: t.taskId,
        taskType: 'mj_txt2img',
        paramJson: paramJson(t),
        completeTime,
        resultInfoJson: st === 'success'
          ? { resultUrls: urls.map((resultUrl) => ({ resultUrl })) }
          : null,
        successFlag: flag,
        createTime: t.createdAt,
        errorCode: st === 'fail' ? code : null,
        errorMessage: st === 'fail' ? msg : null,
      });
    case 'suno': {
      const stage = st === 'pending' ? t.stage : null;
      const status = st === 'success'
        ? 'SUCCESS'
        : st === 'fail'
        ? 'GENERATE_AUDIO_FAILED'
        : stage === 'first'
        ? 'FIRST_SUCCESS'
        : stage === 'text'
        ? 'TEXT_SUCCESS'
        : 'PENDING';
      const sunoData = st === 'fail' || status === 'PENDING' ? [] : sunoTracks(s, t, {
        camel: true,
        audio: st === 'success' ? 'all' : stage === 'first' ? 'first' : 'none',
      });
      return envelope({
        taskId: t.taskId,
        parentMusicId: typeof t.request.audioId === 'string' ? t.request.audioId : '',
        param: paramJson(t),
        response: {
          taskId: t.taskId,
          sunoData,
          ...(st === 'fail' ? { errorMessage: msg } : {}),
        },
        status,
        type: 'GENERATE',
        errorCode: st === 'fail' ? code : null,
        errorMessage: st === 'fail' ? msg : null,
      });
    }
  }
}
