import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import V2Dashboard from './pages/V2Dashboard';
import './styles/dashboard.css';

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');
createRoot(root).render(
  <StrictMode>
    <V2Dashboard />
  </StrictMode>,
);
