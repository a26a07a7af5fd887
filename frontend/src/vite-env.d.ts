/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Agent base URL for a dev server or a separately hosted build; empty = same origin. */
  readonly VITE_AGENT_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
