import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { AgentUrlError, agentBaseUrl } from './config';
import V2Dashboard from './pages/V2Dashboard';
import './styles/dashboard.css';

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');

// A wrong agent URL in the deployment is said on the page at once, not at the first click.
let misconfigured: string | null = null;
try {
  agentBaseUrl();
} catch (error) {
  if (!(error instanceof AgentUrlError)) throw error;
  misconfigured = error.message;
}

createRoot(root).render(
  <StrictMode>
    {misconfigured === null ? (
      <V2Dashboard />
    ) : (
      <main className="app">
        <section className="panel">
          <h1>voicepool</h1>
          <p role="alert" data-testid="config-error">
            This page is not set up correctly: {misconfigured}
          </p>
        </section>
      </main>
    )}
  </StrictMode>,
);
