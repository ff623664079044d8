// vitest setup for every file: posters render with the installed ffmpeg core (a deployed
// function fetches it from storage).
import { useLocalFfmpegCore } from '../local/local-core.ts';

useLocalFfmpegCore();
