import { defineConfig } from 'vitest/config';

// npm run test:load (scripts/load.sh): the load run, not part of npm test.
export default defineConfig({
  test: {
    include: ['tests/load/**/*.load.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
