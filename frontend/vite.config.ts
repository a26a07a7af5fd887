/// <reference types="vitest/config" />
import { defineConfig, loadEnv } from 'vite';
import react from '@vitejs/plugin-react';

// The built app is served by the agent at `/` (index.html + /assets). For `npm run dev` the dev
// server forwards the agent's routes to VITE_AGENT_URL, so the page stays same-origin and the
// agent needs no CORS.
export default defineConfig(({ mode }) => {
  const env = loadEnv(mode, process.cwd(), 'VITE_');
  const agent = env.VITE_AGENT_URL || 'http://127.0.0.1:8000';
  // Keep the Host header: the agent builds `ws_url` from it, so signaling goes through this proxy too.
  const forward = { target: agent, changeOrigin: false };
  return {
    plugins: [react()],
    publicDir: false,
    server: {
      host: '127.0.0.1',
      port: 5173,
      proxy: {
        '/v2': forward,
        '/health': forward,
        '/openapi.json': forward,
        '/ws': { ...forward, ws: true },
      },
    },
    build: {
      outDir: 'dist',
      sourcemap: true,
      target: 'es2022',
      // Worklet modules load by URL; keep them files, never data: URLs.
      assetsInlineLimit: (file: string) => (file.endsWith('.worklet.js') ? false : undefined),
    },
    test: {
      environment: 'jsdom',
      globals: true,
      setupFiles: ['./test/setup.ts'],
      include: ['src/**/*.test.{ts,tsx}', 'test/**/*.test.{ts,tsx}'],
      restoreMocks: true,
    },
  };
});
